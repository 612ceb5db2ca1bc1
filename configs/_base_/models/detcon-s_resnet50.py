# DetCon-S (SimCLR form), ResNet-50: one network, the DetCon-B projector, no predictor, no EMA. The
# loss contrasts the projections of both views (keys gathered with gradient across GPUs).
# There is no official DetCon-S code: projector size and temperature are DetCon-B's (decision).
model = dict(
    type='DetConS',
    num_samples=16,
    # M, the id limit of the data's MultiViewWithMask (configs/_base_/datasets/*detcon*.py: 65536)
    num_mask_ids=65536,
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3, ),
        norm_cfg=dict(type='SyncBN'),
        zero_init_residual=True),
    neck=dict(
        type='DetConNeck',
        in_channels=2048,
        hid_channels=4096,
        out_channels=256,
        norm_cfg=dict(type='SyncBN')),
    head=dict(
        type='DetConHead',
        loss=dict(type='DetConLoss', temperature=0.1, local_negatives=True, simclr=True)))
