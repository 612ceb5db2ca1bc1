"""The cross-rank collectives shared by every algorithm.

The gathers concatenate equally shaped per-rank tensors along dim 0 in rank order; ``rank_mean`` averages
logged scalars. All return the input unchanged when no process group (or a world of one) is initialised,
so the same code runs in single-process CPU tests.
"""
from typing import Dict, Tuple

import torch
import torch.distributed as dist
from mmengine.dist import get_rank, get_world_size, is_distributed


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] per rank -> [W*B, ...]; carries no gradient (keys, targets, ids)."""
    if not is_distributed() or get_world_size() == 1:
        return x
    x = x.detach().contiguous()
    out = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(out, x)
    return torch.cat(out, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for the local slice.

    The loss on rank r depends on the slice of rank s, so d(sum_r L_r)/dx_s needs an all-reduce of
    the per-rank gradients; returning only ``grads[rank]`` (as a plain split would) drops the
    cross-rank terms.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(get_world_size())]
        dist.all_gather(out, x)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] per rank -> [W*B, ...] with gradient flowing back to every rank's slice."""
    if not is_distributed() or get_world_size() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def rank_mean(values: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Scalars -> their mean over ranks, for logging, with one all_reduce of a stacked vector.

    A value carrying a gradient becomes ``mean + (local - local.detach())``: it equals the mean exactly,
    while its gradient is still the local one (DDP averages gradients itself).
    """
    if not is_distributed() or get_world_size() == 1 or not values:
        return values
    keys = list(values)
    local = torch.stack([values[k].detach().reshape(()).float() for k in keys])
    dist.all_reduce(local, op=dist.ReduceOp.SUM)
    mean = local / get_world_size()
    out = {}
    for i, key in enumerate(keys):
        value = values[key]
        logged = mean[i].to(value.dtype)
        out[key] = logged + (value - value.detach()) if value.requires_grad else logged
    return out
