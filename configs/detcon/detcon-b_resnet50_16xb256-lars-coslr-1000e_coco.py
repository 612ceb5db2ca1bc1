# DetCon-B, ResNet-50, 16 GPUs x 256 images, 1000 epochs on COCO train2017 (118k images, ~28 steps
# per epoch) with Felzenszwalb masks; for ground-truth instance masks switch the two "GT" lines of
# configs/_base_/datasets/coco_detcon.py. The ImageNet recipe (LARS 3.2, 10 warm-up epochs) is kept;
# the paper's COCO schedule is not known exactly.
_base_ = [
    '../_base_/datasets/coco_detcon.py',
    '../_base_/models/detcon-b_resnet50.py',
    '../_base_/schedules/imagenet_lars_coslr_detcon_1000e.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=50, max_keep_ckpts=3))
