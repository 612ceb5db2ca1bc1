# DetCon's optimisation for a global batch of 4096: LARS (lr 0.2 x 4096/256 = 3.2, weight decay
# 1.5e-6, momentum 0.9, trust coefficient 1e-3); biases and BN parameters get neither weight decay
# nor LARS adaptation. Linear warm-up for epochs // 100 epochs, then cosine to 0, both per iteration.
# mmdetcon's ForeachLARS (mmpretrain's LARS maths, trust ratios on the device) differs slightly from DetCon's optax
# chain (see configs/detcon/README.md).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='ForeachLARS', lr=3.2, weight_decay=1.5e-6, momentum=0.9),
    paramwise_cfg=dict(
        custom_keys={
            'bn': dict(decay_mult=0, lars_exclude=True),
            'bias': dict(decay_mult=0, lars_exclude=True),
            'downsample.1': dict(decay_mult=0, lars_exclude=True),  # BN of the ResNet shortcut
        }))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=990, eta_min=0., by_epoch=True, begin=10, end=1000,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1000)

# lr 3.2 is for 16 GPUs x 256 images; `tools/train.py --auto-scale-lr` rescales it.
auto_scale_lr = dict(base_batch_size=4096)
