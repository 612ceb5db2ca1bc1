# DetCon data on COCO train2017 (all 118k images; annotations are not used by default).
# Masks: Felzenszwalb id maps mirroring the image folder, data/coco/masks_fh/<image>.png, made once
# with DetCon's FH parameters (the defaults):
#   python tools/masks/generate_masks.py --img-root data/coco/train2017 --out-root data/coco/masks_fh
# Ground-truth instance masks instead (background id 0, instances 1..n; smaller instances drawn on
# top of larger ones): use the two commented lines marked "GT" below in place of their FH versions.
dataset_type = 'CocoMaskDataset'
data_root = 'data/coco/'

num_mask_ids = 65536  # M: ids 0..M-1 per image, checked by MultiViewWithMask; all of uint16
# (FH maps; GT instance maps hold 1 + the image's instances). The model's num_mask_ids must match.

data_preprocessor = dict(
    type='DetConDataPreprocessor',  # SelfSupDataPreprocessor + the batched id maps, non_blocking
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# DetCon's (BYOL's) asymmetric views; see imagenet_detcon.py.
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
    dict(type='LoadIdMap'),  # FH
    # dict(type='LoadCocoInstanceIds'),  # GT
    dict(type='MultiViewWithMask', num_views=[1, 1], num_mask_ids=num_mask_ids,
         transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackDetConInputs'),  # the views' id maps as one tensor: [B, 2, H, W] once collated
]

train_dataloader = dict(
    batch_size=256,  # per GPU, as on ImageNet
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img_path='train2017/'),
        mask_root='masks_fh/', with_anns=False,  # FH
        # mask_root=None, with_anns=True,  # GT
        pipeline=train_pipeline))
