"""``--amp`` without CUDA: bfloat16 autocast on CPU (mmdetcon.engine.CPUAmpOptimWrapper).

Every pretraining config (configs/detcon, configs/detco, configs/baselines) trains ITERS iterations under
the AMP wrapper; at each one a float32 copy loaded with the same weights and buffers (EMA targets, queues)
takes the same batch and random draws, and the two losses are compared. The shapes configs read their own
loader (the session's 16-image shapes set); the ImageNet/COCO configs build their real model (ResNet-50,
full heads and queues) and take batches of the shapes loader of the same algorithm (same data format,
96 px views). One subprocess of tools/train.py --amp proves the CLI path.

Tolerance |amp - fp32| <= 0.01 |fp32| + 0.25: bfloat16 keeps 8 significant bits (inputs of every
conv/linear rounded by up to 2**-9 relative). At random initialisation the projections of different images
and masks are nearly parallel, so a contrastive loss at temperature 0.1-0.2 reads cosine differences of the
size of that rounding, magnified 5-10x: on these batches of 2 images the largest gaps seen are 0.13
(DetCon-S, ResNet-50, loss 1.03) and 0.15 (DetCo, ResNet-50, eight InfoNCE terms summing to 53). The
baselines' heads (mmpretrain) also form their logits/cosines in bfloat16, whose spacing near 2 is 2**-7.
"""
import copy
import functools
import glob
import json
import math
import os.path as osp
import random
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from conftest import ROOT, run_tool
from mmdetcon.engine import CPUAmpOptimWrapper, amp_optim_wrapper_cfg
from mmdetcon.utils.logs import logged_scalars

LOSS_RTOL, LOSS_ATOL = 0.01, 0.25  # |amp - fp32| <= RTOL |fp32| + ATOL (module docstring)
BATCH, ITERS = 2, 2
PRETRAIN = sorted(p for d in ('detcon', 'detco', 'baselines')
                  for p in glob.glob(osp.join(ROOT, 'configs', d, '*.py')))
SHAPES = [p for p in PRETRAIN if p.endswith('_shapes.py')]
LARGE = [p for p in PRETRAIN if p not in SHAPES]


def _ids(paths: List[str]) -> List[str]:
    return [osp.relpath(p, osp.join(ROOT, 'configs')) for p in paths]


@pytest.fixture(autouse=True)
def _setup():
    MessageHub.get_current_instance().update_info('max_iters', 100)  # read by the EMA momentum schedules
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def _config(path: str) -> Config:
    return Config.fromfile(path)


@functools.lru_cache(maxsize=None)
def _batches(path: str, shapes_root: str) -> List[dict]:
    """ITERS batches of BATCH images from the train loader of the shapes config ``path``."""
    init_default_scope('mmpretrain')
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)  # the views' random draws (no worker seeds with num_workers=0)
    loader_cfg = copy.deepcopy(_config(path).train_dataloader)
    loader_cfg.dataset.update(data_root=shapes_root, num_images=16)
    loader_cfg.update(batch_size=BATCH, num_workers=0, persistent_workers=False, pin_memory=False)
    loader_cfg.setdefault('collate_fn', dict(type='default_collate'))
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    batches = []
    for data in loader:
        batches.append(data)
        if len(batches) == ITERS:
            return batches
    raise AssertionError(f'the loader gave {len(batches)} < {ITERS} batches')


def _trainable(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


def _train(cfg: Config, batches: List[dict]) -> Dict[str, List[float]]:
    """Losses of ITERS AMP training iterations and, at each, the float32 loss of the same weights, buffers
    (EMA targets, queues), batch and random draws."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    amp_model = MODELS.build(model_cfg).train()
    fp32_model = copy.deepcopy(amp_model)
    amp_cfg, message = amp_optim_wrapper_cfg(cfg.optim_wrapper, device='cpu')
    assert message.startswith('AMP: bf16 autocast on CPU')
    runs = {'amp': (amp_model, build_optim_wrapper(amp_model, amp_cfg)),
            'fp32': (fp32_model, build_optim_wrapper(fp32_model, copy.deepcopy(cfg.optim_wrapper)))}
    assert isinstance(runs['amp'][1], CPUAmpOptimWrapper)
    losses = {name: [] for name in runs}
    dtypes = {name: set() for name in runs}
    for name, (model, _) in runs.items():
        model.backbone.conv1.register_forward_hook(lambda m, i, o, seen=dtypes[name]: seen.add(o.dtype))
    start = _trainable(amp_model).clone()
    for it, data in enumerate(batches):
        fp32_model.load_state_dict(amp_model.state_dict())  # the float32 step starts where AMP is
        for name, (model, wrapper) in runs.items():
            torch.manual_seed(100 + it)  # mask sampling, shuffles: the same draws in both
            log = model.train_step(copy.deepcopy(data), wrapper)
            losses[name].append(float(log['loss'].detach()))
    assert dtypes == {'amp': {torch.bfloat16}, 'fp32': {torch.float32}}, dtypes
    assert not torch.equal(_trainable(amp_model), start)  # the AMP steps update the weights
    return losses


def _check(losses: Dict[str, List[float]]) -> None:
    for it, (fp32, amp) in enumerate(zip(losses['fp32'], losses['amp'])):
        assert math.isfinite(amp) and math.isfinite(fp32), losses
        assert abs(amp - fp32) <= LOSS_RTOL * abs(fp32) + LOSS_ATOL, (it, losses)


def _sibling(path: str) -> str:
    """The shapes config of the same algorithm (model type) as ``path``."""
    kind = _config(path).model.type
    found = [p for p in SHAPES if _config(p).model.type == kind]
    assert len(found) == 1, (path, kind, found)
    return found[0]


@pytest.mark.parametrize('path', SHAPES, ids=_ids(SHAPES))
def test_shapes_config_trains_under_amp(path, shapes_root):
    _check(_train(_config(path), _batches(path, shapes_root)))


def _recipe(path: str) -> str:
    cfg = _config(path)
    return json.dumps(dict(model=cfg.model.to_dict(), optim_wrapper=cfg.optim_wrapper.to_dict()),
                      sort_keys=True, default=str)


@functools.lru_cache(maxsize=None)
def _large_losses(recipe: str, shapes_root: str) -> Dict[str, List[float]]:
    """One run per distinct (model, optim_wrapper): the 200e/800e/AA or 300e/1000e/COCO variants differ in
    schedule and data pipeline only, and the batches here come from the shapes loader either way."""
    path = next(p for p in LARGE if _recipe(p) == recipe)
    return _train(_config(path), _batches(_sibling(path), shapes_root))


@pytest.mark.parametrize('path', LARGE, ids=_ids(LARGE))
def test_large_config_model_trains_under_amp(path, shapes_root):
    assert _config(path).model.backbone.depth == 50
    _check(_large_losses(_recipe(path), shapes_root))


def test_every_pretraining_config_is_covered():
    assert len(SHAPES) >= 7 and len(LARGE) >= 7
    for path in LARGE:
        _sibling(path)


def test_amp_cfg_per_device():
    base = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    cpu, line = amp_optim_wrapper_cfg(dict(base, loss_scale=512.), device='cpu')
    assert cpu['type'] == 'CPUAmpOptimWrapper' and 'loss_scale' not in cpu and line.startswith('AMP: bf16')
    cuda, line = amp_optim_wrapper_cfg(base, device='cuda')
    assert cuda['type'] == 'AmpOptimWrapper' and cuda['loss_scale'] == 'dynamic'
    assert line == 'AMP: float16 autocast on CUDA with loss scaling (dynamic)'
    with pytest.raises(ValueError, match='bfloat16'):
        CPUAmpOptimWrapper(optimizer=torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1),
                           dtype='float16')


def test_train_tool_amp_on_cpu(shapes_root, tmp_path):
    work = str(tmp_path / 'detcon-b-amp')
    proc = run_tool(['tools/train.py', 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py',
                     '--amp', '--work-dir', work, '--no-persistent-workers', '--cfg-options',
                     'train_cfg.max_epochs=1', f'train_dataloader.dataset.data_root={shapes_root}',
                     'train_dataloader.dataset.num_images=8', 'train_dataloader.batch_size=4',
                     'train_dataloader.num_workers=0', 'default_hooks.logger.interval=1', 'custom_hooks=[]'],
                    env=None)
    log = proc.stdout + proc.stderr
    assert 'AMP: bf16 autocast on CPU' in log, log[-3000:]
    assert 'Epoch(train) [1][2/2]' in log, log[-3000:]
    rows = [row for row in logged_scalars(work) if 'loss' in row]
    assert len(rows) == 2 and all(math.isfinite(row['loss']) for row in rows), rows
