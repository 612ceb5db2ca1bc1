# mmpretrain imagenet_sgd_coslr_200e.py (MoCo v2 / DenseCL) shortened to 5 epochs: SGD (wd 1e-4,
# momentum 0.9) with the recipe's lr 0.03 at batch 256 scaled linearly to batch 32 (0.00375), cosine to 0
# per iteration, no warm-up. `--auto-scale-lr` rescales from batch 32.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03 * 32 / 256, weight_decay=1e-4, momentum=0.9))

param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=5, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5)
auto_scale_lr = dict(base_batch_size=32)
