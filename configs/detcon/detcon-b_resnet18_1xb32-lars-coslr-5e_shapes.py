# DetCon-B demo on the synthetic shapes (CPU-sized): ResNet-18 (512-d res5, 3x3 cells at 96 px),
# batch 32, 5 epochs, Felzenszwalb masks computed on the fly. Deviation for CPU speed: projector and
# predictor are 1024 hidden / 128 out instead of DetCon's 4096 / 256 (they run on 32 x 16 rows per
# view, ~15% of the step at 4096). Schedule of the shapes baselines (1 warm-up epoch, cosine) with
# DetCon's LARS values: lr 0.2 x 32/256 = 0.025, weight decay 1.5e-6; EMA momentum 0.004 -> 0.
_base_ = [
    '../_base_/datasets/shapes_detcon.py',
    '../_base_/schedules/shapes_lars_coslr_5e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='DetConB',
    base_momentum=0.004,
    end_momentum=0.,
    num_samples=16,
    num_mask_ids={{_base_.num_mask_ids}},  # the id limit MultiViewWithMask checks (256 on shapes)
    backbone=dict(type='ResNet', depth=18, out_indices=(3, ), norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=True),
    neck=dict(type='DetConNeck', in_channels=512, hid_channels=1024, out_channels=128,
              norm_cfg=dict(type='SyncBN')),
    head=dict(
        type='DetConHead',
        predictor=dict(type='NonLinearNeck', in_channels=128, hid_channels=1024, out_channels=128,
                       num_layers=2, with_bias=True, with_last_bn=False, with_last_bias=False,
                       with_avg_pool=False, norm_cfg=dict(type='SyncBN')),
        loss=dict(type='DetConLoss', temperature=0.1)))

optim_wrapper = dict(optimizer=dict(lr=0.2 * 32 / 256, weight_decay=1.5e-6))

default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=1, max_keep_ckpts=1))

# Pictures of the views the model trains on (mmdetcon/engine/hooks/view_visualization_hook.py) at the
# first iteration and every `interval` (40: also the last of this 5-epoch demo; under 1 % of its time):
# work_dirs/<run>/<timestamp>/vis_data/vis_image/views_0_<iter>.png.
custom_hooks = [dict(type='ViewVisualizationHook', interval=40, num_images=1)]
