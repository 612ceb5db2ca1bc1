# DetCon data on ImageNet-1k: two 224 px views with DetCon's (BYOL's) augmentations, each carrying
# the crop of the image's Felzenszwalb id map.
# Layout: data/imagenet/train/<class>/<image>.JPEG, data/imagenet/meta/train.txt
# ("<class>/<image>.JPEG <label>" lines; labels unused) and the FH maps mirroring the image tree,
# data/imagenet/masks_fh/<class>/<image>.png, made once with (DetCon's FH parameters are the defaults):
#   python tools/masks/generate_masks.py --img-root data/imagenet/train \
#       --out-root data/imagenet/masks_fh --ann-file data/imagenet/meta/train.txt
dataset_type = 'ImageMaskDataset'
data_root = 'data/imagenet/'

num_mask_ids = 65536  # M: ids 0..M-1 per image, checked by MultiViewWithMask; all of uint16
# (FH maps are uint8, or uint16 above 255 segments). The model's num_mask_ids must be the same.

data_preprocessor = dict(
    type='DetConDataPreprocessor',  # SelfSupDataPreprocessor + the batched id maps, non_blocking
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# Views: one random window per view for the image (bicubic) and its id map (nearest), flip p=0.5,
# colour jitter p=0.8 (additive brightness, random order), grayscale p=0.2, then the asymmetric
# blur (p=1.0 / 0.1; sigma U(0.1, 2), 23 taps) and solarize (p=0.0 / 0.2).
view_pipeline1 = [
    dict(type='DetConRandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.),
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         transforms=[dict(type='DetConColorJitter', brightness=0.4, contrast=0.4,
                          saturation=0.2, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),  # BGR luma weights
    dict(type='DetConGaussianBlur', sigma_range=(0.1, 2.0), prob=1.0),
    dict(type='Solarize', thr=128, prob=0.0),
]
view_pipeline2 = [
    dict(type='DetConRandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.),
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         transforms=[dict(type='DetConColorJitter', brightness=0.4, contrast=0.4,
                          saturation=0.2, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='DetConGaussianBlur', sigma_range=(0.1, 2.0), prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # Reads the dataset's seg_map_path. To run without precomputed masks (slow: FH costs ~0.26 s
    # per image), add fallback='felzenszwalb' here and allow_missing_masks=True in the dataset.
    dict(type='LoadIdMap'),
    dict(type='MultiViewWithMask', num_views=[1, 1], num_mask_ids=num_mask_ids,
         transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackDetConInputs'),  # the views' id maps as one tensor: [B, 2, H, W] once collated
]

train_dataloader = dict(
    batch_size=256,  # per GPU; DetCon's global batch is 4096 (16 x 256)
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix=dict(img_path='train/'),
        mask_root='masks_fh/',
        pipeline=train_pipeline))
