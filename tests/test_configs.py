"""Every shipped config loads, and its model, train pipeline, optimiser and schedulers build; every
pretraining model trains all its trainable parameters (one forward and backward on a tiny batch)."""
import glob
import os.path as osp
from typing import Dict, List

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
    assert isinstance(wrapper.optimizer, torch.optim.Optimizer)
    # Pretraining never trains a classifier: every trainable parameter must get a gradient path.
    key = repr(model_cfg)  # configs that differ only in schedule or data share one model: check it once
    if key not in _GRAD_PROBLEMS:
        _GRAD_PROBLEMS[key] = _gradient_problems(model)
    assert not _GRAD_PROBLEMS[key], f'trainable parameters without a finite gradient: {_GRAD_PROBLEMS[key]}'


_GRAD_PROBLEMS: Dict[str, List[str]] = {}
#: Momentum / EMA copies, updated from the online network under no_grad: the only frozen parameters.
TARGET_PREFIXES = ('target_net.', 'encoder_k.')


def _tiny_batch(model: torch.nn.Module, size: int = 64, batch: int = 2) -> dict:
    """What the config's loader would hand the data preprocessor, at ``batch`` images of ``size`` px:
    uint8 views [B,3,size,size] (DetCo: 2 globals, then 2 patch sets of ``size // 2`` px), empty data
    samples, and for DetCon the batched id maps [B,2,size,size] (4 quadrant segments, the second view's
    shifted by a quarter so that the two views share some segments but not all)."""
    from mmpretrain.structures import DataSample

    from mmdetcon.models.algorithms.detcon import _DetConBase
    from mmdetcon.models.algorithms.detco import DetCo
    gen = torch.Generator().manual_seed(0)

    def views(n: int, px: int) -> List[torch.Tensor]:
        return [torch.randint(0, 256, (batch, 3, px, px), dtype=torch.uint8, generator=gen) for _ in range(n)]

    data = dict(inputs=views(2, size), data_samples=[DataSample() for _ in range(batch)])
    if isinstance(model, DetCo):
        data['inputs'] += views(2 * model.neck.num_patches, size // 2)
    if isinstance(model, _DetConBase):
        half, quarter = size // 2, size // 4
        quadrants = (torch.arange(size)[:, None] >= half).long() * 2 + (torch.arange(size)[None] >= half).long()
        shifted = torch.roll(quadrants, shifts=(quarter, quarter), dims=(0, 1)) + 1  # ids 1..4
        data['masks'] = torch.stack([quadrants, shifted]).expand(batch, 2, size, size).clone()
    return data


def _gradient_problems(model: torch.nn.Module) -> List[str]:
    """One training step's forward (data preprocessor, then ``loss``) and backward; names of trainable
    parameters whose gradient is missing or not finite, and of any parameter whose ``requires_grad`` is
    not "False exactly inside the momentum/EMA target encoders".
    ``zero_init_residual`` makes some gradients exactly 0 at initialisation: the check is for a gradient
    path, not for a non-zero step."""
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('max_iters', 10)  # CosineEMA reads it (Runner sets it)
    model.train()
    data = model.data_preprocessor(_tiny_batch(model), training=True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    problems = []
    for name, param in model.named_parameters():
        if name.startswith(TARGET_PREFIXES) != (not param.requires_grad):
            problems.append(f'{name} ({"trainable target" if param.requires_grad else "frozen"})')
        elif not param.requires_grad:
            continue
        elif param.grad is None:
            problems.append(f'{name} (no gradient)')
        elif not torch.isfinite(param.grad).all():
            problems.append(f'{name} (non-finite gradient)')
    return problems
