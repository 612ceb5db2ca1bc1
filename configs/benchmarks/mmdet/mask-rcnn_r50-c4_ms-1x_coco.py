# COCO instance segmentation, Mask R-CNN R50-C4, multi-scale 1x (MoCo/DetCo's detectron2 R50-C4 benchmark in
# mmdet): mmdet's caffe C4 model switched to a PyTorch-style ResNet with RGB normalisation, synchronised BN,
# no frozen stages, BN not in eval mode, and res5 (the RoI shared head) followed by an extra BN
# (ResLayerExtraNorm, randomly initialised, as MoCo's Res5ROIHeadsExtraNorm). 12 epochs, short side 640-800.
#
# res5 lives in the RoI head, so the backbone file is loaded twice (its layer4.* keys match the shared head):
#   bash tools/dist_train.sh configs/benchmarks/mmdet/mask-rcnn_r50-c4_ms-1x_coco.py 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=backbone.pth model.roi_head.shared_head.init_cfg.checkpoint=backbone.pth
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco.py'

# ResLayerExtraNorm registers into mmdet's MODELS (needs full mmcv); mmdetcon installs the weights_only loader.
custom_imports = dict(
    imports=['mmdetcon', 'mmpretrain.models.utils.res_layer_extra_norm'], allow_failed_imports=False)
runner_type = 'mmpretrain.MMDetConRunner'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'))))

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

train_dataloader = dict(collate_fn=dict(type='pseudo_collate'), dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
test_dataloader = dict(collate_fn=dict(type='pseudo_collate'))

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
