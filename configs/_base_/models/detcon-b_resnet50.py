# DetCon-B (BYOL form), ResNet-50: online backbone + mask-pooling projector + predictor; the target
# (backbone + projector) is a cosine EMA of the online network. SyncBN everywhere (reverted to BN by
# the Runner on a single process); the MLPs normalise over all B x 16 pooled rows.
model = dict(
    type='DetConB',
    base_momentum=0.004,  # mmengine convention: target tau = 1 - 0.004 = 0.996, cosine to 1.0
    end_momentum=0.,
    num_samples=16,  # masks sampled per view (uniform over present ids, with replacement)
    # M, the id limit of the data's MultiViewWithMask (configs/_base_/datasets/*detcon*.py: 65536)
    num_mask_ids=65536,
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3, ),  # res5 map without global pooling: 7x7 cells at 224 px
        norm_cfg=dict(type='SyncBN'),
        zero_init_residual=True),
    neck=dict(
        type='DetConNeck',  # mask pooling + Linear(2048,4096)-BN-ReLU-Linear(4096,256, no bias)
        in_channels=2048,
        hid_channels=4096,
        out_channels=256,
        norm_cfg=dict(type='SyncBN')),
    head=dict(
        type='DetConHead',
        predictor=dict(
            type='NonLinearNeck',
            in_channels=256,
            hid_channels=4096,
            out_channels=256,
            num_layers=2,
            with_bias=True,
            with_last_bn=False,
            with_last_bias=False,
            with_avg_pool=False,
            norm_cfg=dict(type='SyncBN')),
        loss=dict(type='DetConLoss', temperature=0.1, local_negatives=True)))
