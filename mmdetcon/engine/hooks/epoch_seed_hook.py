"""Re-seed every epoch from (seed, epoch, iteration), so that a resumed run draws what an uninterrupted one
does."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from mmdetcon.registry import HOOKS


def epoch_seed(seed: int, epoch: int, iteration: int) -> int:
    """A well-mixed 32-bit seed for the epoch that starts at ``iteration`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed % 2**63, epoch, iteration]).generate_state(1)[0])


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Before each training epoch, seed ``random``, numpy and torch from the run's seed, the epoch and the
    iteration it starts at.

    Everything random in an epoch (augmentations with ``num_workers=0``, mask-id sampling, Shuffle-BN
    permutations, the DataLoader's worker base seed) then depends only on the seed, the epoch and the
    restored state, not on what happened before the checkpoint. ``runner.seed`` already differs per rank
    when ``randomness.diff_rank_seed`` is set; mmengine restores it from the checkpoint on resume.
    Persistent DataLoader workers keep their own generators across epochs and are not re-seeded.
    An iteration-based loop has one "epoch", started again at the resumed iteration: its random stream
    then continues freshly instead of replaying the first iterations' draws.
    """

    priority = 'HIGHEST'

    def before_train_epoch(self, runner) -> None:
        seed = epoch_seed(runner.seed, runner.epoch, runner.iter)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # every device's generator too
