# DetCo (Xie et al. 2021), ResNet-50, 8 GPUs x 32 images, SGD + cosine, 200 epochs on ImageNet-1k.
# Without RandAugment on the global views: corresponds to the v1 "DetCo" rows (see README.md).
_base_ = [
    '../_base_/datasets/imagenet_detco.py',
    '../_base_/schedules/imagenet_sgd_coslr_200e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='DetCo',
    queue_len=65536,  # 8 queues (global/local x res2..res5) sharing one pointer
    feat_dim=128,
    momentum=0.001,  # mmengine convention: key encoder m = 1 - 0.001 = 0.999
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN'),
        zero_init_residual=False),
    neck=dict(
        type='DetCoNeck',
        in_channels=(256, 512, 1024, 2048),
        out_channels=128,
        num_patches=9,
        global_hid_channels=1.0,  # H = C_i (MoCo v2 head)
        local_hid_channels=1.0),  # H_i = C_i (not stated in the paper; 9.0 gives the 9*C_i variant)
    head=dict(type='DetCoLoss', temperature=0.2, stage_weights=(0.1, 0.4, 0.7, 1.0)))

# SGD lr 0.03 (for 8 x 32 = 256 images per step; `--auto-scale-lr` rescales it), momentum 0.9, wd 1e-4,
# cosine over 200 epochs: configs/_base_/schedules/imagenet_sgd_coslr_200e.py.
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
