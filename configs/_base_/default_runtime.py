# Runtime shared by every mmdetcon config (a copy of mmpretrain's, not an inherited 'mmpretrain::' base).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmdetcon'], allow_failed_imports=False)

# Re-seeds every epoch (exact resume), counts skipped unreadable files, runs on CPU clusters
# (mmdetcon/engine/runner.py).
runner_type = 'MMDetConRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when CUDA is unavailable.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
