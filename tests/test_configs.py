"""Every shipped config loads, and its model, train pipeline, optimiser and schedulers build."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT

CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)
PRETRAIN = [p for p in CONFIGS if '/benchmarks/' not in p]


def _ids(paths):
    return [osp.relpath(p, osp.join(ROOT, 'configs')) for p in paths]


def test_configs_exist():
    names = _ids(CONFIGS)
    for required in ('baselines/byol', 'baselines/mocov2', 'baselines/simclr', 'baselines/densecl',
                     'detcon/detcon-b_resnet50', 'detcon/detcon-s_resnet50', 'detco/detco_resnet50',
                     'detcon/detcon-b_resnet18', 'detcon/detcon-s_resnet18', 'detco/detco_resnet18'):
        assert any(n.startswith(required) for n in names), f'no config {required}*'


def _has_mmcv_ops() -> bool:
    try:
        import mmcv.ops  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.parametrize('path', CONFIGS, ids=_ids(CONFIGS))
def test_config_conventions(path):
    if '/benchmarks/mmdet/' in path and not _has_mmcv_ops():
        pytest.skip('mmdet configs import mmdet models, which need mmcv compiled ops (tools/install_mmcv.sh)')
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain' or '/benchmarks/' in path
    assert 'mmdetcon' in cfg.custom_imports['imports']
    text = open(path).read()
    assert 'mmpretrain::' not in text, 'inherit our own _base_ copies (the _scope_ collate bug)'
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if loader:
            assert loader.collate_fn.type in ('default_collate', 'pseudo_collate'), (path, field)
            assert '_scope_' not in loader.collate_fn


@pytest.mark.parametrize('path', PRETRAIN, ids=_ids(PRETRAIN))
def test_pretrain_config_builds(path):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS, PARAM_SCHEDULERS, TRANSFORMS

    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0
    for step in cfg.train_dataloader.dataset.pipeline:
        TRANSFORMS.build(step)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    schedulers = cfg.param_scheduler if isinstance(cfg.param_scheduler, list) else [cfg.param_scheduler]
    for sched in schedulers:
        sched = dict(sched)
        sched.pop('convert_to_iter_based', None)
        PARAM_SCHEDULERS.build(sched, default_args=dict(optimizer=wrapper.optimizer))
    # Pretraining never trains a classifier: every trainable parameter must get a gradient path.
    assert isinstance(wrapper.optimizer, torch.optim.Optimizer)
