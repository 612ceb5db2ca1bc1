# CPU demo: DetCo with a ResNet-18 on 256 synthetic 128 px "shapes" images, 5 epochs.
# Views scaled down (global 96 px; patch sets 96 -> 3x3 x 32 -> 24 px); schedule = the MoCo v2 shapes
# baseline's (configs/baselines/mocov2_resnet18_1xb32-coslr-5e_shapes.py), so the two are comparable.
_base_ = [
    '../_base_/datasets/shapes_detco.py',
    '../_base_/schedules/shapes_sgd_coslr_5e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='DetCo',
    # 4 batches, fewer keys than images (as the MoCo v2 shapes baseline), so a query rarely meets a stale
    # key of its own image among the negatives; a multiple of the batch. 8 queues share one pointer.
    queue_len=128,
    feat_dim=128,
    momentum=0.001,  # key encoder m = 0.999
    backbone=dict(
        type='ResNet',
        depth=18,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN'),
        zero_init_residual=False),
    neck=dict(type='DetCoNeck', in_channels=(64, 128, 256, 512), out_channels=128, num_patches=9,
              local_hid_channels=1.0),
    head=dict(type='DetCoLoss', temperature=0.2, stage_weights=(0.1, 0.4, 0.7, 1.0)))

default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))

# Pictures of the views the model trains on (mmdetcon/engine/hooks/view_visualization_hook.py) at the
# first iteration and every `interval` (40: also the last of this 5-epoch demo; under 1 % of its time):
# work_dirs/<run>/<timestamp>/vis_data/vis_image/views_0_<iter>.png.
custom_hooks = [dict(type='ViewVisualizationHook', interval=40, num_images=1)]
