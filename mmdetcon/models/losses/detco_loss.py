"""DetCo multi-level global/local InfoNCE loss (Xie et al. 2021, Eq. 1, 2, 4, 5)."""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from mmdetcon.registry import MODELS

TERMS = ('gg', 'll', 'lg')


def info_nce(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """InfoNCE from logits (similarities already divided by the temperature), batch mean.

    pos: [N] logit of the positive key; neg: [N, K] logits of the negatives. Equals cross-entropy with
    target 0 on ``[pos, neg]``, written as ``logsumexp([pos, neg]) - pos`` to avoid building that matrix.
    """
    if neg.dtype in (torch.float16, torch.bfloat16):
        pos, neg = pos.float(), neg.float()
    return (torch.logaddexp(pos, torch.logsumexp(neg, dim=1)) - pos).mean()


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

    Returns ``(total, parts)``; ``parts`` holds the unweighted terms keyed ``gg_s2, ll_s2, lg_s2, ...``
    (stage i of the list is named ``s{i+2}``).
    """
    num_stages = len(stage_weights)
    _check_inputs(dict(q_global=q_global, k_global=k_global, q_local=q_local, k_local=k_local,
                       queue_global=queue_global, queue_local=queue_local), num_stages)
    parts: Dict[str, torch.Tensor] = {}
    total = q_global[0].new_zeros(())
    for i, weight in enumerate(stage_weights):
        s = f's{i + 2}'
        # Queries pre-divided by the temperature: every product below is a logit.
        q_g, q_l = q_global[i] / temperature, q_local[i] / temperature  # [N, D]
        k_g, k_l = k_global[i], k_local[i]  # [N, D]
        # Copies: callers enqueue into the same buffers in place before backward.
        queue_g = queue_global[i].detach().to(q_g.dtype, copy=True)  # [D, K]
        queue_l = queue_local[i].detach().to(q_l.dtype, copy=True)
        # Global and local queries share the global queue: one product reads it once.
        neg_g = torch.cat([q_g, q_l]) @ queue_g  # [2N, K]: rows :N global queries, N: local ones
        neg_l = q_l @ queue_l  # [N, K]
        n = q_g.shape[0]
        parts[f'gg_{s}'] = info_nce((q_g * k_g).sum(1), neg_g[:n])
        parts[f'll_{s}'] = info_nce((q_l * k_l).sum(1), neg_l)
        parts[f'lg_{s}'] = info_nce((q_l * k_g).sum(1), neg_g[n:])
        total = total + weight * sum(parts[f'{t}_{s}'] for t in TERMS)
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
