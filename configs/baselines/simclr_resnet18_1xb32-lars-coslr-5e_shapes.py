# SimCLR baseline on the synthetic shapes (CPU-sized): mmpretrain's simclr_resnet50_16xb256-coslr-200e_in1k.py
# with a ResNet-18, batch 32 and 5 epochs. Projection MLP hidden width = backbone width (512), as in the
# SimCLR code (2048 for ResNet-50); NT-Xent temperature 0.1.
_base_ = [
    '../_base_/datasets/shapes_simclr.py',
    '../_base_/schedules/shapes_lars_coslr_5e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='SimCLR',
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='SyncBN'), zero_init_residual=True),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=512,
        out_channels=128,
        num_layers=2,
        with_avg_pool=True),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.1),
)

default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))
