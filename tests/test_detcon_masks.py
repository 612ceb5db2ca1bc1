"""DetCon mask path: downsampling against a brute-force per-cell vote, sampling statistics, pooling
against a manual average."""
from collections import Counter

import pytest
import torch

from mmdetcon.models.utils import downsample_masks, pool_masks, sample_mask_ids


def brute_force_downsample(id_map, h, w):
    B, H, W = id_map.shape
    sy, sx = H // h, W // w
    out = []
    for b in range(B):
        row = []
        for cy in range(h):
            for cx in range(w):
                votes = Counter(id_map[b, cy * sy:(cy + 1) * sy, cx * sx:(cx + 1) * sx].flatten()
                                .tolist())
                best = max(votes.values())
                row.append(min(i for i, n in votes.items() if n == best))
        out.append(row)
    return torch.tensor(out)


@pytest.mark.parametrize('max_id', [4, 255, 2**40])  # dense counting and sparse counting paths
def test_downsample_matches_brute_force(max_id):
    g = torch.Generator().manual_seed(0)
    # Blocky maps (segments of 4x4 pixels) so that cells hold several ids with close counts.
    coarse = torch.randint(0, 4, (3, 16, 12), generator=g)
    lookup = torch.randint(0, max_id + 1, (4, ), generator=g)
    id_map = lookup[coarse].repeat_interleave(4, 1).repeat_interleave(4, 2)  # [3,64,48]
    for grid in [(2, 3), (4, 3), (8, 6)]:
        got = downsample_masks(id_map, grid)
        assert got.shape == (3, grid[0] * grid[1]) and got.dtype == torch.long
        assert torch.equal(got, brute_force_downsample(id_map, *grid))


@pytest.mark.parametrize('low,high', [(3, 200), (7, 60000), (5, 2**40)])
def test_exact_tie_goes_to_lowest_id(low, high):
    id_map = torch.full((1, 32, 64), high)
    id_map[0, :, :16] = low  # cell 0: low then high, exactly 50/50
    id_map[0, :, 48:] = low  # cell 1: high then low, exactly 50/50 (order must not matter)
    got = downsample_masks(id_map, (1, 2)).tolist()[0]
    assert got == brute_force_downsample(id_map, 1, 2).tolist()[0]
    assert got == [low, low]


def test_downsample_integer_dtypes_and_errors():
    id_map = torch.randint(0, 200, (2, 32, 32))
    want = brute_force_downsample(id_map, 4, 4)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        assert torch.equal(downsample_masks(id_map.to(dtype), (4, 4)), want)
    with pytest.raises(ValueError, match='not divisible'):
        downsample_masks(id_map, (5, 4))
    with pytest.raises(ValueError, match='integer'):
        downsample_masks(id_map.float(), (4, 4))
    with pytest.raises(ValueError, match='num_ids'):
        downsample_masks(id_map, (4, 4), num_ids=0)


@pytest.mark.parametrize('path', ['dense', 'sort'])
@pytest.mark.parametrize('num_ids', [1, 6, 300])
def test_bounded_ids_and_spare_slot(monkeypatch, path, num_ids):
    """With M = num_ids the vote is static in shape (a [cells, M + 1] table, or a per-cell sort above
    the table limit); ids outside [0, M) are one spare segment with id M, whichever path counts."""
    import mmdetcon.models.utils.mask_pooling as mp
    monkeypatch.setattr(mp, '_DENSE_COUNT_LIMIT', 1 << 40 if path == 'dense' else 0)
    g = torch.Generator().manual_seed(3)
    coarse = torch.randint(0, 5, (2, 8, 8), generator=g)
    lookup = torch.tensor([-7, 0, 2, 5, 299])  # a negative id, in-range ids and ids >= M for small M
    id_map = lookup[coarse].repeat_interleave(4, 1).repeat_interleave(4, 2)  # [2,32,32]
    spare = id_map.clone()
    spare[(id_map < 0) | (id_map >= num_ids)] = num_ids
    for grid in [(1, 1), (2, 4), (8, 8)]:
        got = downsample_masks(id_map, grid, num_ids=num_ids)
        assert got.dtype == torch.long
        assert torch.equal(got, brute_force_downsample(spare, *grid))
    # Unbounded (num_ids None, any path): every integer is an id, negative ones included.
    assert torch.equal(downsample_masks(id_map, (2, 4)), brute_force_downsample(id_map, 2, 4))


def test_sampling_present_ids_uniform_with_replacement():
    # One id covers 47 of 49 cells, two others one cell each: sampling must ignore area.
    cells = torch.full((400, 49), 9)
    cells[:, 5], cells[:, 30] = 3, 250
    ids = sample_mask_ids(cells, 16, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (400, 16) and ids.dtype == torch.long
    counts = Counter(ids.flatten().tolist())
    assert set(counts) == {3, 9, 250}
    for n in counts.values():  # 6400 draws, 1/3 each: sd ~ 38
        assert abs(n - 6400 / 3) < 250
    # With replacement: 16 draws from 3 ids must repeat in every row.
    assert all(len(set(row)) <= 3 for row in ids.tolist())


def test_sampling_is_per_row_and_independent_per_call():
    cells = torch.tensor([[1, 1, 2, 2], [7, 7, 7, 7]])
    gen = torch.Generator().manual_seed(1)
    a, b = sample_mask_ids(cells, 32, gen), sample_mask_ids(cells, 32, gen)
    assert set(a[0].tolist()) <= {1, 2} and set(a[1].tolist()) == {7}
    assert not torch.equal(a[0], b[0])
    again = sample_mask_ids(cells, 32, torch.Generator().manual_seed(1))
    assert torch.equal(again, a)


def test_pooling_matches_manual_average():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64)
    cells = torch.randint(0, 3, (2, 12), generator=g)
    ids = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 5]])  # 5 owns no cell -> zeros
    got = pool_masks(feats, cells, ids)
    flat = feats.flatten(2)
    for b in range(2):
        for r in range(4):
            members = [k for k in range(12) if cells[b, k] == ids[b, r]]
            want = (sum(flat[b, :, k] for k in members) / len(members) if members else
                    torch.zeros(5, dtype=torch.float64))
            torch.testing.assert_close(got[b, r], want)
    with pytest.raises(ValueError, match='do not match'):
        pool_masks(feats, cells[:, :5], ids)
