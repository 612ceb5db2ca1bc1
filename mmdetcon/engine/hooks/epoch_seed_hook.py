"""Re-seed every epoch from (seed, epoch, iteration, rank), so that a resumed run draws what an uninterrupted
one does, and every rank draws its own random stream."""
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from mmdetcon.registry import HOOKS


def epoch_seed(seed: int, epoch: int, iteration: int, rank: int = 0) -> int:
    """A well-mixed 32-bit seed for the epoch that starts at ``iteration`` of a run seeded with ``seed``, on
    process ``rank``.

    Rank ``r > 0`` is numpy's spawned child ``r`` of rank 0's ``SeedSequence`` (``spawn_key=(r,)``), the
    construction numpy designs for independent parallel streams; rank 0 keeps the seed of a single-process run.
    """
    if rank < 0:
        raise ValueError(f'rank must be >= 0, got {rank}')
    spawn_key = (rank,) if rank else ()
    return int(np.random.SeedSequence([seed % 2**63, epoch, iteration],
                                      spawn_key=spawn_key).generate_state(1)[0])


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Before each training epoch, seed ``random``, numpy and torch from the run's seed, the epoch, the
    iteration it starts at and the process rank (``mmengine.dist.get_rank()``).

    Everything random in an epoch (augmentations with ``num_workers=0``, mask-id sampling, Shuffle-BN
    permutations, the DataLoader's worker base seed) then depends only on the seed, the epoch, the rank and
    the restored state, not on what happened before the checkpoint, and no two ranks draw the same sequence
    (DetCon's mask-id draws, for one, would otherwise repeat on every rank). Draws that must agree across
    ranks do not come from these generators: the sampler's shuffle has its own seeded generator, and the
    Shuffle-BN permutation is broadcast from rank 0.

    ``randomness.diff_rank_seed=True`` makes mmengine's ``runner.seed`` itself ``seed + rank``; the rank is
    then mixed in twice, which is harmless (streams stay distinct and reproducible), and mmengine restores the
    seed from the checkpoint on resume either way. Resuming reproduces the draws only at the same world size:
    a rank's stream depends on its rank.
    Persistent DataLoader workers keep their own generators across epochs and are not re-seeded.
    An iteration-based loop has one "epoch", started again at the resumed iteration: its random stream
    then continues freshly instead of replaying the first iterations' draws.
    """

    priority = 'HIGHEST'

    def before_train_epoch(self, runner) -> None:
        seed = epoch_seed(runner.seed, runner.epoch, runner.iter, get_rank())
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # every device's generator too
