# MoCo v2 / DenseCL / DetCo schedule (mmpretrain imagenet_sgd_coslr_200e.py): SGD lr 0.03 for 256 images
# per step, momentum 0.9, weight decay 1e-4, cosine decay to 0 over 200 epochs, no warm-up.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03, weight_decay=1e-4, momentum=0.9))

param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=200, by_epoch=True, begin=0, end=200)
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200)
# `tools/train.py --auto-scale-lr` rescales lr by (world size x batch) / 256.
auto_scale_lr = dict(base_batch_size=256)
