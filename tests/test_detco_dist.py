"""FeatureQueues and Shuffle-BN helpers: single process and 2 gloo processes."""
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmdetcon.models.utils import FeatureQueues, batch_shuffle_multi, batch_unshuffle_multi

N, DIM, LEN = 2, 3, 8  # per-rank batch, key dim, queue length (2 ranks x 2 keys -> 2 steps per lap)


def _keys(rank, step):
    """Distinct per (rank, step, row, queue): value = 1000*queue + 100*step + 10*rank + row (+ dim index)."""
    base = torch.arange(N, dtype=torch.float32)[:, None] + 10 * rank + 100 * step
    return {name: base + 1000 * q + torch.arange(DIM, dtype=torch.float32) / 10
            for q, name in enumerate(('a', 'b'))}


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different random initial queues on purpose
        queues = FeatureQueues(['a', 'b'], DIM, LEN)
        states = []
        for step in range(3):  # 3 x 4 keys into 8 columns: wraps once
            queues.enqueue(_keys(rank, step))
            states.append({k: v.clone() for k, v in queues.state_dict().items()})

        # Shuffle-BN: ids 10*rank + i in a global view and a 9-patch set; "encode" = id * 2.
        torch.manual_seed(7)
        ids = torch.arange(N, dtype=torch.float32) + 10 * rank
        views = ids[:, None, None, None].expand(N, 3, 4, 4).clone()
        patches = ids[:, None, None, None, None].expand(N, 9, 3, 2, 2).clone()
        (views_s, patches_s), perm = batch_shuffle_multi(views, patches)
        keys = batch_unshuffle_multi(views_s[:, 0, 0, :1] * 2, perm)
        torch.save(dict(states=states, views_s=views_s, patches_s=patches_s, keys=keys, ids=ids, perm=perm),
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_rank_results():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(2, _free_port(), out_dir), nprocs=2, join=True)
        return [torch.load(os.path.join(out_dir, f'rank{r}.pt'), weights_only=True) for r in range(2)]


def test_queues_identical_across_ranks(two_rank_results):
    r0, r1 = two_rank_results
    for s0, s1 in zip(r0['states'], r1['states']):
        assert s0.keys() == s1.keys() == {'a', 'b', 'ptr'}
        for key in s0:
            assert torch.equal(s0[key], s1[key]), key


def test_queues_match_single_process_rank_order_and_wrap(two_rank_results):
    states = two_rank_results[0]['states']
    # The same keys concatenated in rank order, enqueued by one process.
    single = FeatureQueues(['a', 'b'], DIM, LEN)
    for step, expected in enumerate(states):
        k0, k1 = _keys(0, step), _keys(1, step)
        single.enqueue({name: torch.cat([k0[name], k1[name]]) for name in k0})
        assert int(expected['ptr']) == int(single.ptr) == ((step + 1) * 2 * N) % LEN
        for name in ('a', 'b'):
            start = (step * 2 * N) % LEN
            assert torch.equal(expected[name][:, start:start + 2 * N], single[name][:, start:start + 2 * N])
    # Hand-written layout after 3 steps: step 2 wrapped onto columns 0..3 (rank 0 then rank 1),
    # columns 4..7 still hold step 1.
    a = states[2]['a']
    for col, (step, rank, row) in enumerate([(2, 0, 0), (2, 0, 1), (2, 1, 0), (2, 1, 1),
                                             (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]):
        assert torch.allclose(a[:, col], 100 * step + 10 * rank + row + torch.arange(DIM) / 10)
        assert torch.allclose(states[2]['b'][:, col], a[:, col] + 1000)


def test_shuffle_moves_views_and_patches_together_and_unshuffles(two_rank_results):
    r0, r1 = two_rank_results
    assert torch.equal(r0['perm'], r1['perm'])
    seen = []
    for r in (r0, r1):
        view_ids = r['views_s'].flatten(1).unique(dim=1).squeeze(1)
        patch_ids = r['patches_s'].flatten(1).unique(dim=1).squeeze(1)
        assert torch.equal(view_ids, patch_ids)  # an image's patches travel with its view
        seen.append(view_ids)
        assert torch.equal(r['keys'].squeeze(1), r['ids'] * 2)  # every key back to its own image
    assert sorted(torch.cat(seen).tolist()) == [0.0, 1.0, 10.0, 11.0]


def test_single_process_shuffle_roundtrip():
    torch.manual_seed(3)
    x = torch.arange(6.)[:, None].repeat(1, 5)
    p = torch.arange(6.)[:, None, None].repeat(1, 9, 2)
    (xs, ps), perm = batch_shuffle_multi(x, p)
    assert torch.equal(xs[:, 0], ps[:, 0, 0]) and torch.equal(xs[:, 0], perm.float())
    assert torch.equal(batch_unshuffle_multi(xs * 3, perm), x * 3)
    with pytest.raises(ValueError, match='batch size'):
        batch_shuffle_multi(x, p[:5])


def test_queue_errors():
    q = FeatureQueues(['a', 'b'], DIM, 6)
    with pytest.raises(ValueError, match='exactly'):
        q.enqueue({'a': torch.zeros(N, DIM)})
    with pytest.raises(ValueError, match='larger than the queue length 6'):
        q.enqueue({'a': torch.zeros(7, DIM), 'b': torch.zeros(7, DIM)})
    with pytest.raises(ValueError, match=r'\[N, 3\]'):
        q.enqueue({'a': torch.zeros(2, 4), 'b': torch.zeros(2, 4)})
    assert torch.allclose(q['a'].norm(dim=0), torch.ones(6))


def test_queue_ring_buffer_with_non_dividing_batches():
    """Batches that do not divide the length (6 GPUs x 32 against 65536, in small): every write lands where a
    plain Python ring buffer puts it, and the pointer never leaves the device as a Python int."""
    length, sizes = 7, [3, 3, 5, 1, 7, 2, 4, 6]
    q = FeatureQueues(['a', 'b'], DIM, length)
    ring_a, ring_b, ptr = [list(col) for col in q['a'].t().tolist()], [list(c) for c in q['b'].t().tolist()], 0
    for step, n in enumerate(sizes):
        a = torch.nn.functional.normalize(torch.randn(n, DIM), dim=1)
        b = torch.nn.functional.normalize(torch.randn(n, DIM), dim=1)
        q.enqueue({'a': a, 'b': b})
        for j in range(n):
            ring_a[(ptr + j) % length] = a[j].tolist()
            ring_b[(ptr + j) % length] = b[j].tolist()
        ptr = (ptr + n) % length
        assert q.ptr.tolist() == [ptr], step
        assert torch.allclose(q['a'], torch.tensor(ring_a).t()) and torch.allclose(q['b'], torch.tensor(ring_b).t())
