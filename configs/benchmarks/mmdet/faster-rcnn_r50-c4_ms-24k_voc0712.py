# PASCAL VOC07+12 detection, Faster R-CNN R50-C4, 24k iterations (MoCo/DetCo's VOC benchmark): mmdet's caffe
# C4 VOC config switched to a PyTorch-style ResNet with RGB normalisation, synchronised BN, no frozen
# stages, BN not in eval mode and an extra BN after res5 (ResLayerExtraNorm). Trained on VOC2007+2012
# trainval (short side 480-800), tested on VOC2007 test with 11-point mAP. Batch 8 GPUs x 2 images,
# SGD 0.02, 100-iteration warm-up, lr x0.1 at 18k and 22k.
#
#   bash tools/dist_train.sh configs/benchmarks/mmdet/faster-rcnn_r50-c4_ms-24k_voc0712.py 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=backbone.pth model.roi_head.shared_head.init_cfg.checkpoint=backbone.pth
_base_ = 'mmdet::pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py'

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
            init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
        bbox_head=dict(num_classes=20)))

# The base already trains on the VOC07+12 ConcatDataset with InfiniteSampler and multi-scale resizing.
train_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
val_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
test_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
val_evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='11points')
test_evaluator = val_evaluator

max_iter = 24000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iter, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_iter, by_epoch=False, milestones=[18000, 22000], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000))
log_processor = dict(by_epoch=False)
