# CPU-sized linear probe on the synthetic shapes scenes: a frozen ResNet-18 (all 4 stages, BN in eval mode),
# pooled last-stage features, standardised by a non-affine BatchNorm (MAE's linear-probe neck, which makes one
# lr fit backbones whose feature scales differ) and one linear layer predicting which of the 8 classes an
# image contains (sigmoid cross-entropy; scenes hold 2-6 objects, so labels are sets, as in VOC07
# classification). SGD lr 0.01 (stable for any standardised 512-d features), wd 0, cosine over 20 epochs,
# 1 process x 64 images; reports mAP over classes and macro F1.
#
# The data are generated under data/shapes on first use, or with
#   python tools/data/make_shapes.py --out data/shapes --num-images 256 --splits train val
#   python tools/model_converters/extract_backbone.py work_dirs/<pretrain>/epoch_5.pth work_dirs/r18.pth
#   python tools/train.py configs/benchmarks/mmpretrain/resnet18_1xb64-linear-multilabel-coslr-20e_shapes.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/r18.pth
_base_ = [
    '../../_base_/datasets/shapes_multilabel.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    # checkpoint='' must be overridden; an exported backbone needs no prefix.
    backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(3, ), frozen_stages=4,
                  init_cfg=dict(type='Pretrained', checkpoint='')),
    neck=[dict(type='GlobalAveragePooling'), dict(type='ClsBatchNormNeck', input_features=512)],
    head=dict(
        type='MultiLabelLinearClsHead',
        num_classes=8,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=20, by_epoch=True, begin=0, end=20)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)

default_hooks = dict(logger=dict(interval=4), checkpoint=dict(interval=20, max_keep_ckpts=1))
