# DetCon-S demo on the synthetic shapes (CPU-sized): the DetCon-B demo with one network, no
# predictor, no EMA (SimCLR form of the DetCon loss); projector 512-1024-128 as there.
_base_ = './detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py'

model = dict(
    _delete_=True,
    type='DetConS',
    num_samples=16,
    num_mask_ids={{_base_.num_mask_ids}},  # the id limit MultiViewWithMask checks (256 on shapes)
    backbone=dict(type='ResNet', depth=18, out_indices=(3, ), norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=True),
    neck=dict(type='DetConNeck', in_channels=512, hid_channels=1024, out_channels=128,
              norm_cfg=dict(type='SyncBN')),
    head=dict(type='DetConHead', loss=dict(type='DetConLoss', temperature=0.1, simclr=True)))
