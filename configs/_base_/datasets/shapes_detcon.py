# DetCon data on the synthetic shapes dataset (mmdetcon.datasets.shapes): 128 px images, 96 px views.
#
# Masks: Felzenszwalb (FH) ids, as in DetCon, with the ImageNet parameters scaled to the image:
# scale and min_size both x (128*128) / (500*375) ~= 0.087 -> 87 (FH's threshold scale/|C| and the
# minimum segment size are areas, so this keeps the segmentation of a downsized photo comparable).
# That gives ~25 segments per shapes image (3-66); skimage needs ~21 ms of CPU per 128 px image, so
# precomputed maps are read when present and FH runs online otherwise (LoadIdMap fallback). To
# precompute them (same parameters):
#   python tools/masks/generate_masks.py --img-root data/shapes/train/images \
#       --out-root data/shapes/train/masks_fh --scale 87 --sigma 0.8 --min-size 87
# Ground-truth instance masks instead: set `with_masks='instance'` in the dataset.
dataset_type = 'ShapesDataset'
data_root = 'data/shapes/'
crop_size = 96  # a multiple of 32: a 3x3 grid of res5 cells
fh_cfg = dict(scale=87, sigma=0.8, min_size=87)

# M: ids 0..M-1 per image, checked by MultiViewWithMask (the model's num_mask_ids must match).
# FH at min_size 87 on 128 px leaves at most 128*128/87 = 188 segments (the benchmark profiles
# scale min_size with the area, so the bound holds at their sizes), instance maps hold 1 + at most
# a few objects and grid maps n*n ids: 256 bounds them all and keeps the per-cell vote a small table.
num_mask_ids = 256

data_preprocessor = dict(
    type='DetConDataPreprocessor',  # SelfSupDataPreprocessor + the batched id maps, non_blocking
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# Asymmetric BYOL/DetCon photometrics: blur p=1.0 / 0.1, solarize p=0.0 / 0.2. The blur kernel has
# crop_size/10 taps (9 at 96 px), as the official pipeline does at 224 px (23 taps).
view_pipeline1 = [
    dict(type='DetConRandomResizedCrop', scale=crop_size, crop_ratio_range=(0.08, 1.),
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
    dict(type='DetConRandomResizedCrop', scale=crop_size, crop_ratio_range=(0.08, 1.),
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
    # reads the dataset's seg_map_path ({data_root}/train/masks_fh/*.png), FH online where absent
    dict(type='LoadIdMap', fallback='felzenszwalb', fallback_cfg=fh_cfg),
    dict(type='MultiViewWithMask', num_views=[1, 1], num_mask_ids=num_mask_ids,
         transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackDetConInputs'),  # the views' id maps as one tensor: [B, 2, H, W] once collated
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,  # the batch (views and id maps) is copied to the GPU without blocking
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        num_images=256,  # as the shapes BYOL/MoCo/SimCLR bases, for comparable runs
        image_size=128,
        seed=0,
        with_masks='masks_fh',
        pipeline=train_pipeline))
