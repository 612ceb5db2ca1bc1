# Linear evaluation on ImageNet, BYOL/DetCon protocol (mmpretrain's byol resnet50_8xb512-linear-coslr-90e_in1k):
# frozen ResNet-50 (all 4 stages, BN in eval mode), linear classifier on pooled features, LARS lr 1.6,
# wd 0, batch 8 x 512 = 4096, cosine over 90 epochs.
#
# The backbone file is a tensor-only export (no prefix):
#   python tools/model_converters/extract_backbone.py work_dirs/<pretrain>/epoch_300.pth backbone.pth
#   bash tools/dist_train.sh configs/benchmarks/mmpretrain/resnet50_8xb512-linear-lars-coslr-90e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=backbone.pth
_base_ = [
    '../../_base_/models/resnet50_linear.py',
    '../../_base_/datasets/imagenet_bs32_pil_resize.py',
    '../../_base_/schedules/imagenet_lars_coslr_90e.py',
    '../../_base_/default_runtime.py',
]

# checkpoint='' must be overridden; an exported backbone needs no prefix.
model = dict(backbone=dict(frozen_stages=4, init_cfg=dict(type='Pretrained', checkpoint='')))

train_dataloader = dict(batch_size=512)

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
