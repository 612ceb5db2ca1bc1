"""LARS whose trust ratios stay on the device: no host sync per parameter.

mmpretrain 1.2.0's ``LARS`` reads both norms of every adapted parameter with ``.item()`` (two host syncs per
parameter per step: 106 for a ResNet-50 whose BN and bias parameters are excluded, as the configs do). :class:`ForeachLARS` computes the same update with
``torch._foreach_*`` ops and ``torch.where`` for the zero-norm cases, so ``step`` never waits for the
device. Its state (``momentum_buffer`` per parameter) is mmpretrain's, so checkpoints move between the two.
"""
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch.optim.optimizer import Optimizer

from mmdetcon.registry import OPTIMIZERS

_SETTINGS = ('lr', 'momentum', 'dampening', 'weight_decay', 'nesterov', 'eta', 'eps')


@OPTIMIZERS.register_module()
class ForeachLARS(Optimizer):
    """Layer-wise adaptive rate scaling for SGD (You et al., 2017), the maths of mmpretrain's ``LARS``.

    Per parameter ``p`` with gradient ``g`` in a group (lr, momentum ``m``, dampening, weight decay ``wd``,
    ``eta``, nesterov, and optionally ``lars_exclude``)::

        local_lr = eta * |p| / (|g| + wd * |p| + eps)   if |p| != 0 and |g| != 0 and not lars_exclude
                 = 1                                     otherwise
        d = (g + wd * p) * lr * local_lr
        buf = d (first step) | m * buf + (1 - dampening) * d;   d = d + m * buf (nesterov) | buf
        p -= d

    The norms are computed in the parameter dtype and the ratio in float64 (mmpretrain forms it from
    Python floats). Cannot: sparse gradients; parameters in reduced precision (the per-parameter scale is
    rounded to the parameter dtype, mmpretrain keeps it in float32 for such tensors).

    Args:
        params: parameters or parameter-group dicts (a group may set ``lars_exclude=True``).
        lr: base learning rate.
        momentum: momentum factor.
        weight_decay: L2 penalty, added to the gradient before scaling.
        dampening: momentum dampening.
        eta: LARS trust coefficient.
        nesterov: Nesterov momentum (needs momentum > 0 and zero dampening).
        eps: added to the ratio's denominator.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0., weight_decay: float = 0.,
                 dampening: float = 0., eta: float = 0.001, nesterov: bool = False,
                 eps: float = 1e-8) -> None:
        if lr < 0.0:
            raise ValueError(f'Invalid learning rate: {lr}')
        if momentum < 0.0:
            raise ValueError(f'Invalid momentum value: {momentum}')
        if weight_decay < 0.0:
            raise ValueError(f'Invalid weight_decay value: {weight_decay}')
        if eta < 0.0:
            raise ValueError(f'Invalid LARS coefficient value: {eta}')
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError('Nesterov momentum requires a momentum and zero dampening')
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, eta=eta, eps=eps)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('nesterov', False)
            # groups saved by mmpretrain's LARS carry no eps (it keeps one per optimizer)
            group.setdefault('eps', self.__dict__.get('defaults', {}).get('eps', 1e-8))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # mmengine's optimizer constructor makes one group per parameter: batch the parameters of all
        # groups that share their settings, device and dtype into one set of foreach calls.
        buckets: Dict[tuple, List[torch.Tensor]] = defaultdict(list)
        settings: Dict[tuple, dict] = {}
        for group in self.param_groups:
            hyper = tuple(group[k] for k in _SETTINGS) + (bool(group.get('lars_exclude', False)),)
            for p in group['params']:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError('ForeachLARS does not support sparse gradients')
                key = (p.device, p.dtype) + hyper
                buckets[key].append(p)
                settings[key] = group
        for key, params in buckets.items():
            self._update(settings[key], params)
        return loss

    def _update(self, group: dict, params: List[torch.Tensor]) -> None:
        """Update ``params`` (one device and dtype, all with gradients) with ``group``'s settings (every
        group of these parameters has the same)."""
        wd, lr, momentum = group['weight_decay'], group['lr'], group['momentum']
        grads = [p.grad for p in params]

        if group.get('lars_exclude', False):
            scales = None  # local_lr = 1
        else:
            w_norm = torch.stack(torch._foreach_norm(params)).double()  # [P]
            g_norm = torch.stack(torch._foreach_norm(grads)).double()  # [P]
            ratio = group['eta'] * w_norm / (g_norm + wd * w_norm + group['eps'])
            ratio = torch.where((w_norm != 0) & (g_norm != 0), ratio, torch.ones_like(ratio))
            scales = (ratio * lr).to(params[0].dtype).unbind(0)  # P 0-dim tensors on the device

        scale = lr if scales is None else scales
        if wd != 0:
            steps = torch._foreach_add(grads, params, alpha=wd)
            torch._foreach_mul_(steps, scale)
        else:
            steps = torch._foreach_mul(grads, scale)

        if momentum != 0:
            bufs, old_bufs, old_steps = [], [], []
            for p, d_p in zip(params, steps):
                state = self.state[p]
                if 'momentum_buffer' not in state:
                    state['momentum_buffer'] = torch.clone(d_p).detach()
                else:
                    old_bufs.append(state['momentum_buffer'])
                    old_steps.append(d_p)
                bufs.append(state['momentum_buffer'])
            if old_bufs:
                torch._foreach_mul_(old_bufs, momentum)
                torch._foreach_add_(old_bufs, old_steps, alpha=1 - group['dampening'])
            if group['nesterov']:
                torch._foreach_add_(steps, bufs, alpha=momentum)
            else:
                steps = bufs
        torch._foreach_sub_(params, steps)
