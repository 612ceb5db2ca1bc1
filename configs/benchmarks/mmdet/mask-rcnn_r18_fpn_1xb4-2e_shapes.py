# CPU-sized transfer demo: Mask R-CNN with a ResNet-18 FPN on the synthetic shapes scenes (128 px, 8 classes),
# 1 process x 4 images, 2 epochs, evaluated with COCO bbox and segm AP. It follows the R50-FPN benchmark
# (whole backbone fine-tuned, BN not in eval mode, 4conv-1fc box head) at a scale that runs on a laptop.
#
# The data are generated under data/shapes on first use (ShapesCocoDataset), or beforehand with
#   python tools/data/make_shapes.py --out data/shapes --num-images 256 --splits train val
# Pretrain a ResNet-18 (e.g. configs/baselines/byol_resnet18_1xb32-lars-coslr-5e_shapes.py), export its
# backbone and fine-tune:
#   python tools/model_converters/extract_backbone.py work_dirs/<pretrain>/epoch_5.pth work_dirs/r18.pth
#   python tools/train.py configs/benchmarks/mmdet/mask-rcnn_r18_fpn_1xb4-2e_shapes.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/r18.pth
# The placeholder 'torchvision://resnet18' (ImageNet-supervised weights) is the supervised reference.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# ShapesCocoDataset and SubsetCocoMetric are registered in mmdet's registries by mmdetcon.datasets.shapes_coco.
custom_imports = dict(imports=['mmdetcon', 'mmdetcon.datasets.shapes_coco'], allow_failed_imports=False)
runner_type = 'mmpretrain.MMDetConRunner'

norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN in a non-distributed run
num_classes = 8
model = dict(
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512], norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', norm_cfg=norm_cfg, num_classes=num_classes),
        mask_head=dict(norm_cfg=norm_cfg, num_classes=num_classes)),
    # 128 px scenes hold at most 6 objects: far fewer proposals and sampled RoIs than COCO's 2000 / 512 keep
    # the RoI heads (most of the compute on a CPU) affordable.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)))

data_root = 'data/shapes'
image_scale = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        _delete_=True,
        type='ShapesCocoDataset',
        data_root=data_root,
        split='train',
        num_images=256,
        image_size=128,
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        _delete_=True,
        type='ShapesCocoDataset',
        data_root=data_root,
        split='val',
        num_images=64,
        image_size=128,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# COCO AP on the images the val dataset uses (a larger generated set may be on disk); keep ann_file in step
# with val_dataloader.dataset.data_root.
val_evaluator = dict(
    _delete_=True,
    type='SubsetCocoMetric',
    ann_file=f'{data_root}/annotations/instances_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# 256 images / 4 = 64 iterations per epoch; lr 0.02 x 4/16 (mmdet's linear scaling rule), 20-iteration warm-up.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=20)]
optim_wrapper = dict(optimizer=dict(lr=0.005))
auto_scale_lr = dict(enable=False, base_batch_size=4)

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=1))
