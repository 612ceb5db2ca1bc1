# DetCo views for the 128 px synthetic shapes, scaled down from ImageNet's 224 / 255-85-64:
# global views = the MoCo v2 view at 96 px (as shapes_mocov2.py); each of the two local patch sets is a
# >= 60% crop resized to 96 px, augmented once, cut into 3x3 cells of 32 px, shuffled, one random 24 px
# patch per cell. HueSafeColorJitter = mmpretrain ColorJitter whose hue op also works on numpy 2.
dataset_type = 'ShapesDataset'
data_root = 'data/shapes'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

photometric = [
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
global_view = [dict(type='RandomResizedCrop', scale=96, crop_ratio_range=(0.2, 1.), backend='pillow')] + photometric
local_set = [
    dict(type='DetCoLocalPatches', transforms=photometric, crop_size=96, cell_size=32, patch_size=24,
         grid_size=3, crop_scale=(0.6, 1.0), crop_ratio=(3. / 4., 4. / 3.), backend='pillow')
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='DetCoViews', global_transforms=global_view, local_transforms=local_set),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    drop_last=True,  # the key queues need full batches
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', num_images=256, image_size=128,
                 seed=0, pipeline=train_pipeline))
