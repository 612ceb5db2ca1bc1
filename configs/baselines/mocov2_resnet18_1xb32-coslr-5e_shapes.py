# MoCo v2 baseline on the synthetic shapes (CPU-sized): mmpretrain's mocov2_resnet50_8xb32-coslr-200e_in1k.py
# with a ResNet-18, batch 32 and 5 epochs. Key EMA momentum 0.001 (mmengine convention, tau = 0.999);
# temperature 0.2; MLP hidden width = backbone width (512) as in the MoCo code. The queue holds 128 keys
# (4 batches; must be a multiple of the global batch): smaller than the 256 images, so it rarely holds a
# stale key of the query's own image (65536 on ImageNet).
_base_ = [
    '../_base_/datasets/shapes_mocov2.py',
    '../_base_/schedules/shapes_sgd_coslr_5e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='MoCo',
    queue_len=128,
    feat_dim=128,
    momentum=0.001,
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN'), zero_init_residual=False),
    neck=dict(type='MoCoV2Neck', in_channels=512, hid_channels=512, out_channels=128, with_avg_pool=True),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2),
)

default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))
