# COCO Mask R-CNN R200-FPN multi-scale 1x for DeepMind's released DetCon-B ResNet-200 (mmdet's ResNet stops at
# depth 152; ResNetSamePadding adds 200 and pads as Haiku did):
#   python tools/model_converters/import_detcon.py resnet200_detcon_b_imagenet_1k.npy work_dirs/detcon-b_r200.pth
#   bash tools/dist_train.sh configs/benchmarks/mmdet/mask-rcnn_r200-same_fpn_ms-1x_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/detcon-b_r200.pth
_base_ = './mask-rcnn_r50-same_fpn_ms-1x_coco.py'

model = dict(backbone=dict(depth=200))
