# Linear evaluation on ImageNet, MoCo/DetCo protocol (mmpretrain's mocov2 resnet50_8xb32-linear-steplr-100e_in1k):
# frozen ResNet-50 (all 4 stages, BN in eval mode), linear classifier on pooled features, SGD lr 30,
# momentum 0.9, wd 0, batch 8 x 32 = 256, lr x0.1 at epochs 60 and 80 of 100.
#
# The backbone file is a tensor-only export (no prefix):
#   python tools/model_converters/extract_backbone.py work_dirs/<pretrain>/epoch_200.pth backbone.pth
#   bash tools/dist_train.sh configs/benchmarks/mmpretrain/resnet50_8xb32-linear-steplr-100e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=backbone.pth
_base_ = [
    '../../_base_/models/resnet50_linear.py',
    '../../_base_/datasets/imagenet_bs32_pil_resize.py',
    '../../_base_/schedules/imagenet_sgd_steplr_100e.py',
    '../../_base_/default_runtime.py',
]

# checkpoint='' must be overridden; an exported backbone needs no prefix.
model = dict(backbone=dict(frozen_stages=4, init_cfg=dict(type='Pretrained', checkpoint='')))

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
