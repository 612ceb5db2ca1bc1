"""The cross-rank collectives shared by every algorithm.

The gathers concatenate equally shaped per-rank tensors along dim 0 in rank order; ``rank_mean`` averages
logged scalars. All return the input unchanged when no process group (or a world of one) is initialised,
so the same code runs in single-process CPU tests.
"""
from typing import Dict

import torch
import torch.distributed as dist
from mmengine.dist import get_world_size, is_distributed


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] per rank -> [W*B, ...]; carries no gradient (keys, targets, ids)."""
    if not is_distributed() or get_world_size() == 1:
        return x
    x = x.detach().contiguous()
    out = x.new_empty((get_world_size() * x.shape[0], *x.shape[1:]))
    dist.all_gather_single(out, x)  # straight into [W*B, ...]: no list to concatenate
    return out


class _GatherWithGrad(torch.autograd.Function):
    """all_gather into one [W*B, ...] tensor whose backward is a sum reduce-scatter.

    The loss on rank r depends on the slice of rank s, so d(sum_r L_r)/dx_s is the sum over ranks of
    the gradients for slice s: a reduce-scatter of the [W*B, ...] gradient, each rank receiving only
    its own [B, ...] sum (1/W of the bytes an all-reduce of the whole stack delivers). Returning only
    the local slice of the local gradient (as a plain split would) drops the cross-rank terms.
    gloo has both collectives on torch 2.14, so every backend runs the same code.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = x.new_empty((get_world_size() * x.shape[0], *x.shape[1:]))  # [W*B, ...]
        dist.all_gather_single(out, x)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()  # [W*B, ...]
        out = grad.new_empty((grad.shape[0] // get_world_size(), *grad.shape[1:]))  # [B, ...]
        dist.reduce_scatter_single(out, grad, op=dist.ReduceOp.SUM)
        return out


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] per rank -> [W*B, ...] with gradient flowing back to every rank's slice."""
    if not is_distributed() or get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


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
