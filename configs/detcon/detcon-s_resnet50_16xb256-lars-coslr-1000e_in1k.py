# DetCon-S (SimCLR form), ResNet-50, 16 GPUs x 256 images, 1000 epochs on ImageNet-1k.
# No official code exists: views, LARS schedule, projector and temperature are DetCon-B's (decision).
# The alternative reading is SimCLR's own recipe (LARS lr 0.3 x N/256, weight decay 1e-6, 10 warm-up
# epochs), e.g. --cfg-options optim_wrapper.optimizer.lr=4.8 optim_wrapper.optimizer.weight_decay=1e-6.
_base_ = [
    '../_base_/datasets/imagenet_detcon.py',
    '../_base_/models/detcon-s_resnet50.py',
    '../_base_/schedules/imagenet_lars_coslr_detcon_1000e.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=10, max_keep_ckpts=3))
