# mmpretrain imagenet_lars_coslr_200e.py shortened to 5 epochs: LARS (wd 1e-6, momentum 0.9) with the
# recipe's lr 4.8 at batch 4096 scaled linearly to batch 32 (0.0375); 1 warm-up epoch then cosine to 0,
# both per iteration. `--auto-scale-lr` rescales from batch 32. BN and bias parameters get no weight
# decay and no LARS adaptation (BYOL/SimCLR recipes).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='ForeachLARS', lr=4.8 * 32 / 4096, weight_decay=1e-6, momentum=0.9),
    paramwise_cfg=dict(
        custom_keys={
            'bn': dict(decay_mult=0, lars_exclude=True),
            'bias': dict(decay_mult=0, lars_exclude=True),
            # BN inside the ResNet downsample branch
            'downsample.1': dict(decay_mult=0, lars_exclude=True),
        }))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=4, by_epoch=True, begin=1, end=5, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5)
auto_scale_lr = dict(base_batch_size=32)
