# DenseCL baseline on the synthetic shapes (CPU-sized): mmpretrain's densecl_resnet50_8xb32-coslr-200e_in1k.py
# with a ResNet-18, batch 32 and 5 epochs (MoCo v2 views and schedule). Key EMA momentum 0.001 (mmengine
# convention, tau = 0.999); temperature 0.2; global/dense loss mix 0.5. Both queues hold 128 keys (4 batches;
# a multiple of the global batch, below the 256 images; 65536 on ImageNet).
_base_ = [
    '../_base_/datasets/shapes_mocov2.py',
    '../_base_/schedules/shapes_sgd_coslr_5e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='DenseCL',
    queue_len=128,
    feat_dim=128,
    momentum=0.001,
    loss_lambda=0.5,
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN'), zero_init_residual=False),
    neck=dict(type='DenseCLNeck', in_channels=512, hid_channels=512, out_channels=128, num_grid=None),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2),
)
find_unused_parameters = True

default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))
