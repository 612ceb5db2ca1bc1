# COCO Mask R-CNN R50-FPN multi-scale 1x (mask-rcnn_r50_fpn_ms-1x_coco.py) with the backbone DeepMind's DetCon
# weights were trained as: ResNetSamePadding, TF/Haiku SAME padding (asymmetric at stride 2), same key names.
# Import the released file, then fine-tune it:
#   python tools/model_converters/import_detcon.py resnet50_detcon_b_imagenet_1k.npy work_dirs/detcon-b_r50.pth
#   bash tools/dist_train.sh configs/benchmarks/mmdet/mask-rcnn_r50-same_fpn_ms-1x_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/detcon-b_r50.pth
# The stock config (symmetric padding) also loads the file; see the README's model zoo for the difference.
_base_ = './mask-rcnn_r50_fpn_ms-1x_coco.py'

model = dict(
    backbone=dict(
        type='ResNetSamePadding',  # registered by mmdetcon in mmdet's (and mmpretrain's) model registry
        init_cfg=dict(type='Pretrained', checkpoint='')))  # set to the imported backbone file
