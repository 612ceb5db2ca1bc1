# BYOL baseline on the synthetic shapes (CPU-sized): mmpretrain's byol_resnet50_16xb256-coslr-200e_in1k.py
# with a ResNet-18 (512-d features), batch 32 and 5 epochs. Target EMA in mmengine convention:
# momentum = 1 - tau, 0.01 cosine-annealed to 0 (mmpretrain's value; the BYOL paper's tau_base 0.996 is 0.004).
_base_ = [
    '../_base_/datasets/shapes_byol.py',
    '../_base_/schedules/shapes_lars_coslr_5e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='BYOL',
    base_momentum=0.01,
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='SyncBN'), zero_init_residual=False),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=4096,
        out_channels=256,
        num_layers=2,
        with_bias=True,
        with_last_bn=False,
        with_avg_pool=True),
    head=dict(
        type='LatentPredictHead',
        predictor=dict(
            type='NonLinearNeck',
            in_channels=256,
            hid_channels=4096,
            out_channels=256,
            num_layers=2,
            with_bias=True,
            with_last_bn=False,
            with_avg_pool=False),
        loss=dict(type='CosineSimilarityLoss')),
)

default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))
