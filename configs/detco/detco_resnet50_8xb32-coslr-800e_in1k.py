# DetCo, ResNet-50, 800 epochs (the paper's longest VOC schedule); everything else as the 200-epoch config.
_base_ = './detco_resnet50_8xb32-coslr-200e_in1k.py'

param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=800, by_epoch=True, begin=0, end=800)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=800)
