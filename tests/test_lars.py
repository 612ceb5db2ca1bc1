"""ForeachLARS against mmpretrain's LARS (the reference implementation) over 100 steps of two identical
models, param groups built by mmengine from the shipped paramwise rules; its step makes no host sync."""
import copy
import glob
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.engine.optimizers import LARS

import mmdetcon  # noqa: F401  (registers ForeachLARS)
from conftest import ROOT
from mmdetcon.engine.optimizers import ForeachLARS

PARAMWISE = dict(custom_keys={'bn': dict(decay_mult=0, lars_exclude=True),
                              'bias': dict(decay_mult=0, lars_exclude=True)})


class Tiny(nn.Module):
    """Conv + BN + linear (adapted weights, excluded biases/BN), a zero-initialised weight (|w| = 0 case),
    a weight whose gradient is exactly zero (|g| = 0 case) and a frozen one (no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)
        self.zero = nn.Linear(4, 3, bias=False)
        nn.init.zeros_(self.zero.weight)
        self.dead = nn.Parameter(torch.randn(3))
        self.frozen = nn.Linear(4, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x)).relu().mean((2, 3))
        return self.fc(h) + self.zero(h) + 0. * self.dead + self.frozen(h)


def _models(dtype: torch.dtype):
    torch.manual_seed(0)
    model = Tiny().to(dtype)
    return model, copy.deepcopy(model)


def _wrapper(model: nn.Module, kind: str, **kwargs):
    init_default_scope('mmpretrain')  # both optimisers live in mmpretrain's registry
    cfg = dict(type='OptimWrapper', optimizer=dict(type=kind, **kwargs), paramwise_cfg=PARAMWISE)
    return build_optim_wrapper(model, Config(dict(optim_wrapper=cfg)).optim_wrapper)


def _loss(model: nn.Module, step: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(4, 3, 6, 6, generator=g).to(dtype)
    y = torch.randn(4, 3, generator=g).to(dtype)
    return ((model(x) - y) ** 2).mean()


F32, F64 = (torch.float32, 1e-6), (torch.float64, 1e-12)


@pytest.mark.parametrize('settings,dtype,tol', [
    (dict(weight_decay=1e-2, momentum=0.9), *F32),
    (dict(weight_decay=1e-2, momentum=0.9), *F64),
    (dict(weight_decay=0., momentum=0.9, nesterov=True), *F32),
    (dict(weight_decay=0., momentum=0.9, nesterov=True), *F64),
    (dict(weight_decay=1e-2, momentum=0.), *F32),
    (dict(weight_decay=1e-2, momentum=0.9, dampening=0.3), *F32),
], ids=['wd-momentum-f32', 'wd-momentum-f64', 'nowd-nesterov-f32', 'nowd-nesterov-f64', 'wd-nomomentum-f32',
        'wd-dampening-f32'])
def test_matches_mmpretrain_lars_over_100_steps(settings, dtype, tol):
    ours_model, ref_model = _models(dtype)
    ours = _wrapper(ours_model, 'ForeachLARS', lr=0.5, eta=0.02, **settings)
    ref = _wrapper(ref_model, 'LARS', lr=0.5, eta=0.02, **settings)
    assert isinstance(ours.optimizer, ForeachLARS) and type(ref.optimizer) is LARS
    groups = ours.optimizer.param_groups
    assert any(g.get('lars_exclude') for g in groups) and any(not g.get('lars_exclude') for g in groups)
    start = {n: p.detach().clone() for n, p in ref_model.named_parameters()}
    for step in range(100):
        lr = 0.5 * (1 + step) / 100  # a changing lr, as under warm-up
        for wrapper, model in ((ours, ours_model), (ref, ref_model)):
            for group in wrapper.optimizer.param_groups:
                group['lr'] = lr
            wrapper.update_params(_loss(model, step, dtype))
        if step == 49:  # state moves between the two: continue ours from the reference's state
            state = copy.deepcopy(ref.optimizer.state_dict())  # as a checkpoint would hold it
            ours = _wrapper(ours_model, 'ForeachLARS', lr=0.5, eta=0.02, **settings)
            ours.optimizer.load_state_dict(state)
            ours_model.load_state_dict(ref_model.state_dict())
    for (name, p), (_, q) in zip(ours_model.named_parameters(), ref_model.named_parameters()):
        assert p.dtype == dtype and torch.isfinite(p).all()
        rel = ((p - q).norm() / q.norm().clamp_min(1e-30)).item()
        assert rel <= tol, (name, rel)
    moved = {n: ((q - start[n]).norm() / start[n].norm().clamp_min(1e-30)).item()
             for n, q in ref_model.named_parameters()}
    assert moved['conv.weight'] > 1e-2 and moved['bn.weight'] > 1e-3 and moved['zero.weight'] > 0
    # |g| = 0: local lr 1, so only weight decay moves it
    assert (moved['dead'] > 0) == (settings['weight_decay'] > 0)
    assert moved['frozen.weight'] == 0


def test_first_step_hand_derived():
    """One adapted step from zero state: d = (g + wd w) lr eta |w| / (|g| + wd |w| + eps); buffer = d."""
    w = torch.tensor([3., 4.], dtype=torch.float64, requires_grad=True)  # |w| = 5
    opt = ForeachLARS([w], lr=0.1, momentum=0.9, weight_decay=0.5, eta=0.01, eps=0.)
    w.grad = torch.tensor([0., 1.], dtype=torch.float64)  # |g| = 1
    opt.step()
    ratio = 0.01 * 5 / (1 + 0.5 * 5)
    expected = torch.tensor([3 - 0.1 * ratio * 1.5, 4 - 0.1 * ratio * 3.], dtype=torch.float64)
    assert torch.allclose(w.detach(), expected, rtol=0, atol=1e-15)


class _HostSync(RuntimeError):
    pass


def _forbid_host_sync(monkeypatch):
    def refuse(*args, **kwargs):
        raise _HostSync('host sync in step')
    for name in ('item', 'tolist', 'numpy', 'cpu', '__bool__', '__float__', '__int__', '__index__'):
        monkeypatch.setattr(torch.Tensor, name, refuse)


def test_step_makes_no_host_sync(monkeypatch):
    models = _models(torch.float32)
    for model in models:
        _loss(model, 0, torch.float32).backward()
    ours = _wrapper(models[0], 'ForeachLARS', lr=0.1, weight_decay=1e-4, momentum=0.9)
    ref = _wrapper(models[1], 'LARS', lr=0.1, weight_decay=1e-4, momentum=0.9)
    with monkeypatch.context() as patch:
        _forbid_host_sync(patch)
        ours.step()
        ours.step()  # second step: existing momentum buffers
        with pytest.raises(_HostSync):  # the patch catches mmpretrain's .item() calls
            ref.step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA (sync debug mode)')
def test_cuda_step_makes_no_host_sync():
    model = Tiny().cuda()
    opt = ForeachLARS(model.parameters(), lr=0.1, weight_decay=1e-4, momentum=0.9)
    x = torch.randn(4, 3, 6, 6, device='cuda')
    model(x).square().mean().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        opt.step()
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode('default')


def test_shipped_configs_use_foreach_lars():
    for path in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True):
        text = open(path).read()
        assert "type='LARS'" not in text and 'type="LARS"' not in text, path
    for path in glob.glob(osp.join(ROOT, 'configs', '_base_', 'schedules', '*lars*.py')):
        assert Config.fromfile(path).optim_wrapper.optimizer.type == 'ForeachLARS', path
