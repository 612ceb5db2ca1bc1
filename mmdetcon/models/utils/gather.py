"""The one all-gather utility shared by every algorithm.

Both functions concatenate equally shaped per-rank tensors along dim 0 in rank order and return the
input unchanged when no process group (or a world of one) is initialised, so the same code runs in
single-process CPU tests.
"""
from typing import Tuple

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
