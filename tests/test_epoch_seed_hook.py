"""EpochSeedHook gives every rank its own random stream, reproducible from (seed, epoch, iteration, rank)."""
import random
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch

from mmdetcon.engine.hooks import EpochSeedHook
from mmdetcon.engine.hooks import epoch_seed_hook


def _draws_after_hook(rank: int, seed: int = 5, epoch: int = 1, iteration: int = 4) -> tuple:
    runner = SimpleNamespace(seed=seed, epoch=epoch, iter=iteration)
    with mock.patch.object(epoch_seed_hook, 'get_rank', return_value=rank):
        EpochSeedHook().before_train_epoch(runner)
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def _draws_after_seed(seed: int) -> tuple:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_ranks_draw_different_numbers():
    by_rank = [_draws_after_hook(rank) for rank in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            for gen in range(3):  # random, numpy, torch: each differs between any two ranks
                assert by_rank[a][gen] != by_rank[b][gen], (a, b, gen)


def test_same_rank_seed_epoch_iter_reproduces_the_draws():
    first = _draws_after_hook(1)
    _draws_after_hook(0)  # other draws in between change nothing
    assert _draws_after_hook(1) == first
    assert _draws_after_hook(1, epoch=2) != first
    assert _draws_after_hook(1, iteration=5) != first
    assert _draws_after_hook(1, seed=6) != first


def test_rank_streams_are_numpys_spawned_children():
    """Rank 0 keeps the single-process seed; rank r is child r of its SeedSequence (numpy's own spawn)."""
    parent = np.random.SeedSequence([5, 1, 4])
    children = np.random.SeedSequence([5, 1, 4]).spawn(3)
    assert epoch_seed_hook.epoch_seed(5, 1, 4) == int(parent.generate_state(1)[0])
    assert epoch_seed_hook.epoch_seed(5, 1, 4, rank=0) == int(parent.generate_state(1)[0])
    for rank in (1, 2):
        assert epoch_seed_hook.epoch_seed(5, 1, 4, rank) == int(children[rank].generate_state(1)[0])
    assert _draws_after_hook(0) == _draws_after_seed(int(parent.generate_state(1)[0]))
    assert _draws_after_hook(2) == _draws_after_seed(int(children[2].generate_state(1)[0]))
    with pytest.raises(ValueError):
        epoch_seed_hook.epoch_seed(5, 1, 4, rank=-1)
