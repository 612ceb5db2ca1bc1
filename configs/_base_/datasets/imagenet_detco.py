# DetCo data on ImageNet: 2 MoCo v2 global views + 2 independent 3x3 jigsaw patch sets per image.
# Layout (mmpretrain's): data/imagenet/train/<class>/<image> and data/imagenet/meta/train.txt with
# "<class>/<image> <label>" lines (labels are read by the dataset class but unused by DetCo).
# ImageMaskDataset without a mask root reads that list and skips unreadable images (SkippedFilesHook).
dataset_type = 'ImageMaskDataset'
data_root = 'data/imagenet/'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# Photometric part of the MoCo v2 view, shared by the global views and the 255 px local crops.
# HueSafeColorJitter = mmpretrain ColorJitter whose hue op also works on numpy 2.
photometric = [
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
global_view = [dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), backend='pillow')] + photometric
# PIRL-style patch set: >= 60% crop -> 255 px -> same augmentation once -> 3x3 cells of 85 -> shuffled 64 px patches.
local_set = [
    dict(type='DetCoLocalPatches', transforms=photometric, crop_size=255, cell_size=85, patch_size=64,
         grid_size=3, crop_scale=(0.6, 1.0), crop_ratio=(3. / 4., 4. / 3.), backend='pillow')
]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='DetCoViews', global_transforms=global_view, local_transforms=local_set),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    drop_last=True,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='meta/train.txt',
                 data_prefix=dict(img_path='train/'), pipeline=train_pipeline))
