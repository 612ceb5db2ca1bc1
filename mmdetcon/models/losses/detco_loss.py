"""DetCo multi-level global/local InfoNCE loss (Xie et al. 2021, Eq. 1, 2, 4, 5).

Every contrast is computed in float32 (float64 inputs stay float64), also under autocast: at
tau = 0.2 a bf16 queue product would round the negatives' logits. The queue terms go through
:class:`_QueueNCE`, which computes each row's gradient in its forward pass from the softmax it has at
hand, so backward needs neither the [rows, K] logits nor the queue: the caller can enqueue into the
same buffers in place before backward without copying them (8 x 32 MiB at K = 65536). The loss reads
no value back to the host and has static shapes (it compiles with ``torch.compile(fullgraph=True)``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmdetcon.registry import MODELS

TERMS = ('gg', 'll', 'lg')


class _QueueNCE(torch.autograd.Function):
    """Per-row InfoNCE of queries against their positive keys and a constant queue.

    Row m: ``logsumexp([q_m.k_m, q_m @ queue]) - q_m.k_m`` (q already divided by the temperature).
    With p the softmax over ``[pos, neg]``: d/dq_m = (p_pos - 1) k_m + queue @ p_neg and
    d/dk_m = (p_pos - 1) q_m. These [M, D] gradients are formed in forward (the ``p_neg`` product is
    the one backward would do), so only they are saved; the queue receives no gradient.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                grad_enabled: bool) -> torch.Tensor:
        # q, k [M, D]; queue [D, K] -> loss per row [M]. grad_enabled: the caller's grad mode (forward
        # always runs without it, and needs_input_grad ignores it).
        pos = (q * k).sum(1)  # [M]
        neg = q @ queue  # [M, K]
        # One exp pass over the negatives serves both the log-sum-exp and the softmax.
        top = torch.maximum(neg.amax(dim=1), pos)  # [M], for stability
        e_neg = neg.sub_(top[:, None]).exp_()  # [M, K] = exp(neg - top), in place
        e_pos = torch.exp(pos - top)  # [M]
        denom = e_neg.sum(dim=1) + e_pos  # [M]
        lse = top + denom.log()  # [M]
        need_q, need_k = (grad_enabled and need for need in ctx.needs_input_grad[:2])
        grad_q = grad_k = None
        if need_q or need_k:
            coef = e_pos / denom - 1  # [M]: p_pos - 1
            if need_q:
                # queue @ softmax(neg) = (e_neg @ queue^T) / denom: the division runs on [M, D], not [M, K].
                grad_q = torch.addcdiv(coef[:, None] * k, e_neg @ queue.t(), denom[:, None])  # [M, D]
            if need_k:
                grad_k = coef[:, None] * q  # [M, D]
        ctx.save_for_backward(grad_q, grad_k)
        return lse - pos

    @staticmethod
    def backward(ctx, grad_rows: torch.Tensor
                 ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], None, None]:
        grad_q, grad_k = ctx.saved_tensors
        g = grad_rows[:, None]  # [M, 1]
        return (g * grad_q if grad_q is not None else None,
                g * grad_k if grad_k is not None else None, None, None)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_inputs(named: Dict[str, Sequence[torch.Tensor]], num_stages: int) -> None:
    for name, tensors in named.items():
        if not isinstance(tensors, (list, tuple)) or len(tensors) != num_stages:
            got = len(tensors) if isinstance(tensors, (list, tuple)) else type(tensors).__name__
            raise ValueError(f'detco_loss: {name} must be a list with one tensor per stage '
                             f'({num_stages} = len(stage_weights)), got {got}')
    for i in range(num_stages):
        q_g = named['q_global'][i]
        if q_g.dim() != 2:
            raise ValueError(f'detco_loss: q_global[{i}] must be [N, D], got {tuple(q_g.shape)}')
        n, d = q_g.shape
        for name in ('k_global', 'q_local', 'k_local'):
            if tuple(named[name][i].shape) != (n, d):
                raise ValueError(f'detco_loss: {name}[{i}] has shape {tuple(named[name][i].shape)}, '
                                 f'expected {(n, d)} like q_global[{i}]')
        for name in ('queue_global', 'queue_local'):
            queue = named[name][i]
            if queue.dim() != 2 or queue.shape[0] != d:
                raise ValueError(f'detco_loss: {name}[{i}] must be [D={d}, K], '
                                 f'got {tuple(queue.shape)}')


def detco_loss(q_global: List[torch.Tensor],
               k_global: List[torch.Tensor],
               q_local: List[torch.Tensor],
               k_local: List[torch.Tensor],
               queue_global: List[torch.Tensor],
               queue_local: List[torch.Tensor],
               temperature: float = 0.2,
               stage_weights: Sequence[float] = (0.1, 0.4, 0.7, 1.0)
               ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Weighted sum over stages of the three DetCo contrasts.

    Every list holds one entry per stage, shallow to deep (res2 first): embeddings [N, D], queues [D, K].
    Per stage i:  gg = InfoNCE(q_g, k_g; queue_g),  ll = InfoNCE(q_l, k_l; queue_l),
    lg = InfoNCE(q_l, k_g; queue_g)  (local query against the global key only; there is no global-query /
    local-key term).  total = sum_i w_i * (gg + ll + lg), with no averaging over terms or weights.
    The queues are read as constants (no gradient) and are not copied.

    Returns ``(total, parts)``; ``parts`` holds the unweighted terms keyed ``gg_s2, ll_s2, lg_s2, ...``
    (stage i of the list is named ``s{i+2}``), in float32 (float64 for float64 inputs).
    """
    num_stages = len(stage_weights)
    _check_inputs(dict(q_global=q_global, k_global=k_global, q_local=q_local, k_local=k_local,
                       queue_global=queue_global, queue_local=queue_local), num_stages)
    dtype = _compute_dtype(q_global[0])
    grad_enabled = torch.is_grad_enabled()
    parts: Dict[str, torch.Tensor] = {}
    with torch.autocast(device_type=q_global[0].device.type, enabled=False):
        total = q_global[0].new_zeros((), dtype=dtype)
        for i, weight in enumerate(stage_weights):
            s = f's{i + 2}'
            # Queries pre-divided by the temperature: every product below is a logit.
            q_g = q_global[i].to(dtype) / temperature  # [N, D]
            q_l = q_local[i].to(dtype) / temperature
            k_g, k_l = k_global[i].to(dtype), k_local[i].to(dtype)  # [N, D]
            queue_g = queue_global[i].detach().to(dtype)  # [D, K], a view when already in dtype
            queue_l = queue_local[i].detach().to(dtype)
            n = q_g.shape[0]
            # Global and local queries share the global queue: one product reads it once.
            rows_g = _QueueNCE.apply(torch.cat([q_g, q_l]), torch.cat([k_g, k_g]), queue_g,
                                     grad_enabled)  # [2N]
            rows_l = _QueueNCE.apply(q_l, k_l, queue_l, grad_enabled)  # [N]
            parts[f'gg_{s}'] = rows_g[:n].mean()
            parts[f'll_{s}'] = rows_l.mean()
            parts[f'lg_{s}'] = rows_g[n:].mean()
            total = total + weight * (parts[f'gg_{s}'] + parts[f'll_{s}'] + parts[f'lg_{s}'])
    return total, parts


@MODELS.register_module()
class DetCoLoss(nn.Module):
    """Wraps :func:`detco_loss` into the loss dict a runner logs.

    Returns ``loss_s2..`` (the weighted stage sums ``w_i * (gg + ll + lg)``, which add up to the total and
    are summed by ``parse_losses``) and the unweighted terms, detached, under keys without ``loss``.
    """

    def __init__(self, temperature: float = 0.2,
                 stage_weights: Sequence[float] = (0.1, 0.4, 0.7, 1.0)) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'DetCoLoss: temperature must be > 0, got {temperature}')
        self.temperature = temperature
        self.stage_weights = tuple(float(w) for w in stage_weights)

    def forward(self, q_global: List[torch.Tensor], k_global: List[torch.Tensor],
                q_local: List[torch.Tensor], k_local: List[torch.Tensor],
                queue_global: List[torch.Tensor], queue_local: List[torch.Tensor]
                ) -> Dict[str, torch.Tensor]:
        _, parts = detco_loss(q_global, k_global, q_local, k_local, queue_global, queue_local,
                              self.temperature, self.stage_weights)
        losses = {}
        for i, weight in enumerate(self.stage_weights):
            s = f's{i + 2}'
            losses[f'loss_{s}'] = weight * sum(parts[f'{t}_{s}'] for t in TERMS)
        losses.update({key: value.detach() for key, value in parts.items()})
        return losses
