# DetCon-B, ResNet-50, 16 GPUs x 256 images, 300 epochs on ImageNet-1k: the 1000-epoch recipe with a
# 3-epoch (300 // 100) warm-up.
_base_ = './detcon-b_resnet50_16xb256-lars-coslr-1000e_in1k.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=297, eta_min=0., by_epoch=True, begin=3, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300)
