# COCO instance segmentation, Mask R-CNN R50-FPN, multi-scale 1x (the self-supervised transfer benchmark of
# mmselfsup/mmpretrain): the whole backbone is fine-tuned (frozen_stages=-1) with synchronised BN
# everywhere (backbone not in eval mode, FPN, 4conv-1fc box head, mask head), short side 640-800.
# Batch 8 GPUs x 2 images, SGD 0.02, 12 epochs (mmdet's schedule_1x).
#
# Load a tensor-only backbone export (tools/model_converters/extract_backbone.py; no prefix):
#   bash tools/dist_train.sh configs/benchmarks/mmdet/mask-rcnn_r50_fpn_ms-1x_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=backbone.pth
# or  mim train mmdet configs/benchmarks/mmdet/mask-rcnn_r50_fpn_ms-1x_coco.py --launcher pytorch -G 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=backbone.pth
# The placeholder 'torchvision://resnet50' (ImageNet-supervised weights) is the supervised reference.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# mmdetcon installs the checkpoint loader that keeps torch.load(weights_only=True) for foreign files.
custom_imports = dict(imports=['mmdetcon'], allow_failed_imports=False)
# Exact resume and CPU multi-process runs (mmdetcon/engine/runner.py).
runner_type = 'mmpretrain.MMDetConRunner'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]

# mmdet batches images of different sizes: pseudo_collate, not default_collate.
train_dataloader = dict(collate_fn=dict(type='pseudo_collate'), dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
test_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
