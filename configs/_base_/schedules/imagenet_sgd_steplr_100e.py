# Linear evaluation schedule of MoCo-style methods (mmpretrain's imagenet_sgd_steplr_100e.py with the
# MoCo protocol's lr 30 and no weight decay, batch 256): steps x0.1 at epochs 60 and 80.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=30., momentum=0.9, weight_decay=0.))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[60, 80], gamma=0.1)
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)
