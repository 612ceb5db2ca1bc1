# Shapes scenes for multi-label classification: each image is labelled with every class it contains
# (ShapesMultiLabelDataset). Whole 128 px images, horizontal flips only (a crop could remove a labelled
# object). ShapesDataset writes the images under data_root on first use.
dataset_type = 'ShapesMultiLabelDataset'
data_root = 'data/shapes'
data_preprocessor = dict(
    num_classes=8,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', num_images=256, image_size=128,
                 seed=0, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', num_images=64, image_size=128,
                 seed=0, pipeline=test_pipeline))
# mAP over classes (threshold-free) and macro F1 at score 0.5.
val_evaluator = [dict(type='AveragePrecision'), dict(type='MultiLabelMetric', average='macro')]

test_dataloader = val_dataloader
test_evaluator = val_evaluator
