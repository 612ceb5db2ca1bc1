"""Key queues (MoCo memory banks) that advance together under one pointer."""
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmengine.dist import broadcast, is_distributed

from .gather import concat_all_gather


class FeatureQueues(nn.Module):
    """Several [dim, length] queues of L2-normalised keys sharing one write pointer.

    Queues are buffers named after ``names`` (``queues.<name>`` and ``queues.ptr`` in a model's
    state_dict, so training resumes with its negatives). They start as random unit columns.
    ``enqueue`` all-gathers the keys of every rank (rank order) and overwrites the oldest columns; its
    first call also copies rank 0's queues to every rank, so ranks agree even if their random
    initialisations differed.
    """

    def __init__(self, names: Sequence[str], dim: int, length: int) -> None:
        super().__init__()
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f'FeatureQueues: names must be non-empty and unique, got {names}')
        if 'ptr' in names:
            raise ValueError("FeatureQueues: 'ptr' is reserved for the shared pointer")
        if dim <= 0 or length <= 0:
            raise ValueError(f'FeatureQueues: dim and length must be > 0, got {dim}, {length}')
        self.names = names
        self.dim = dim
        self.length = length
        for name in names:
            self.register_buffer(name, F.normalize(torch.randn(dim, length), dim=0))
        self.register_buffer('ptr', torch.zeros(1, dtype=torch.long))
        self._synced = False

    def __getitem__(self, name: str) -> torch.Tensor:
        """The [dim, length] queue ``name`` (negatives; treat as read-only)."""
        if name not in self.names:
            raise KeyError(f'FeatureQueues: no queue {name!r}; queues are {self.names}')
        return getattr(self, name)

    @torch.no_grad()
    def enqueue(self, keys: Dict[str, torch.Tensor]) -> None:
        """Write every queue's keys [N, dim] (all queues at once) and advance the pointer by W*N."""
        if set(keys) != set(self.names):
            raise ValueError(f'FeatureQueues.enqueue: expected keys for exactly {self.names} '
                             f'(they share one pointer), got {sorted(keys)}')
        shapes = {tuple(keys[name].shape) for name in self.names}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != self.dim:
            raise ValueError(f'FeatureQueues.enqueue: every key tensor must be [N, {self.dim}], '
                             f'got shapes {sorted(shapes)}')
        # One collective for all queues: [N, Q, dim] -> [W*N, Q, dim], rank-major.
        gathered = concat_all_gather(torch.stack([keys[name] for name in self.names], dim=1))
        batch = gathered.shape[0]
        if batch > self.length:
            raise ValueError(f'FeatureQueues: the gathered batch ({batch} = world size x per-GPU batch) '
                             f'is larger than the queue length {self.length}')
        if not self._synced:
            if is_distributed():
                for buffer in self.buffers():
                    broadcast(buffer, src=0)
            self._synced = True
        # Pointer arithmetic stays on the device (no host sync). Modular columns also handle a batch that
        # does not divide the queue length (e.g. 6 GPUs x 32 against 65536).
        cols = (self.ptr + torch.arange(batch, device=self.ptr.device)) % self.length
        for i, name in enumerate(self.names):
            queue = getattr(self, name)
            queue[:, cols.to(queue.device)] = gathered[:, i].t().to(queue.dtype)
        self.ptr.copy_((self.ptr + batch) % self.length)

    def extra_repr(self) -> str:
        return f'names={self.names}, dim={self.dim}, length={self.length}'
