"""Shuffle-BN (MoCo) for several per-image tensors moved by one permutation.

mmpretrain's ``batch_shuffle_ddp`` draws a fresh permutation per tensor; DetCo must move an image's
global view and its patch set [N, 9, ...] together, so one permutation is drawn for all of them.
"""
from typing import List, Tuple

import torch
from mmengine.dist import broadcast, get_rank, get_world_size

from .gather import concat_all_gather


@torch.no_grad()
def batch_shuffle_multi(*tensors: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Shuffle images across ranks: every tensor [N, ...] (same N) is moved by one permutation.

    Returns the shuffled tensors for this rank and the global permutation ``perm`` [W*N]: this rank
    now holds gathered rows ``perm[rank*N:(rank+1)*N]``.
    """
    if not tensors:
        raise ValueError('batch_shuffle_multi: no tensors given')
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f'batch_shuffle_multi: tensors disagree on the batch size: '
                         f'{[t.shape[0] for t in tensors]}')
    gathered = [concat_all_gather(t) for t in tensors]
    perm = torch.randperm(gathered[0].shape[0], device=tensors[0].device)
    broadcast(perm, src=0)
    rows = perm.view(get_world_size(), n)[get_rank()]
    return [g[rows] for g in gathered], perm


@torch.no_grad()
def batch_unshuffle_multi(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Return the outputs [N, ...] computed on shuffled rows to their own images (this rank's)."""
    gathered = concat_all_gather(x)  # row j belongs to image perm[j]
    n = x.shape[0]
    if gathered.shape[0] != perm.numel():
        raise ValueError(f'batch_unshuffle_multi: {gathered.shape[0]} gathered rows but the '
                         f'permutation has {perm.numel()}')
    rows = torch.argsort(perm).view(get_world_size(), n)[get_rank()]
    return gathered[rows]
