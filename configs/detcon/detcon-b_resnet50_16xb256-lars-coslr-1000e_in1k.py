# DetCon-B, ResNet-50, 16 GPUs x 256 images, LARS + cosine, 1000 epochs on ImageNet-1k with
# precomputed Felzenszwalb masks (the paper's main setting).
_base_ = [
    '../_base_/datasets/imagenet_detcon.py',
    '../_base_/models/detcon-b_resnet50.py',
    '../_base_/schedules/imagenet_lars_coslr_detcon_1000e.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=10, max_keep_ckpts=3))
