# DetCo + RandAugment on the global views ("DetCo+AA"; the ICCV paper's DetCo numbers use it).
# UNVERIFIED: the paper gives neither the policy, the magnitude nor the position of the augmentation.
# Here: mmpretrain's timm-style RandAugment (2 ops, magnitude 9 of 10, std 0.5) after the crop/flip
# and before colour jitter, on the two global views only; the local patch sets are unchanged.
_base_ = './detco_resnet50_8xb32-coslr-200e_in1k.py'

photometric = [
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
]
rand_augment = dict(
    type='RandAugment',
    policies='timm_increasing',
    num_policies=2,
    total_level=10,
    magnitude_level=9,
    magnitude_std=0.5,
    hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic'))
global_view = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    rand_augment,
] + photometric
local_set = [
    dict(type='DetCoLocalPatches', transforms=photometric + [dict(type='RandomFlip', prob=0.5)],
         crop_size=255, cell_size=85, patch_size=64, grid_size=3, crop_scale=(0.6, 1.0),
         crop_ratio=(3. / 4., 4. / 3.), backend='pillow')
]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='DetCoViews', global_transforms=global_view, local_transforms=local_set),
    dict(type='PackInputs'),
]))
