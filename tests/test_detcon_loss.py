"""DetCon loss against an independent float64 restatement of the definition (plain python loops
over query rows with explicit positive / excluded key sets), a hand-derived case, and 2-process
gloo parity with the single-process loss on the concatenated batch. The chunked autograd function:
values and gradients against a dense float64 restatement and against the dense formulation it
replaced, finite differences, the largest tensor it makes, and a graph-break-free compile."""
import math
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmdetcon.models.losses import DetConLoss, detcon_loss, detcon_s_loss

TAU = 0.1


# ----------------------------------------------------------------------------------------------
# Reference: the definition written as loops, one query row at a time.
def _unit(v):
    n = math.sqrt(max(sum(x * x for x in v), 1e-12))
    return [x / n for x in v]


def _ref_direction(q, t_other, t_same, ids_q, ids_other, offset, tau, local_negatives):
    """q: B x R x D nested lists (local); t_*: N x R x D (global); ids: B x R (local)."""
    B, R, N = len(q), len(q[0]), len(t_other)
    keys = {('other', n, j): _unit(t_other[n][j]) for n in range(N) for j in range(R)}
    keys.update({('same', n, j): _unit(t_same[n][j]) for n in range(N) for j in range(R)})
    total = 0.0
    for b in range(B):
        g = offset + b
        for r in range(R):
            query = _unit(q[b][r])
            my_id = ids_q[b][r]
            positives = {('other', g, j) for j in range(R) if ids_other[b][j] == my_id}
            excluded = {('same', g, j) for j in range(R) if ids_q[b][j] == my_id}
            if not local_negatives:
                same_image = {(u, g, j) for u in ('other', 'same') for j in range(R)}
                excluded |= same_image - positives
            if not positives:
                continue  # weight 0 (the row's target still serves as a negative above)
            logit = {k: sum(a * c for a, c in zip(query, v)) / tau for k, v in keys.items()}
            allowed = [logit[k] for k in keys if k not in excluded]
            m = max(allowed)
            lse = m + math.log(sum(math.exp(s - m) for s in allowed))
            row = -sum(logit[k] - lse for k in positives) / len(positives)
            count = sum(1 for j in range(R) if ids_q[b][j] == my_id)
            total += row / count
    return total / (B * R)


def reference_loss(p1, p2, t1, t2, i1, i2, tau=TAU, local_negatives=True, offset=0,
                   gathered_t1=None, gathered_t2=None):
    p1, p2, t1, t2 = (x.tolist() for x in (p1, p2, t1, t2))
    i1, i2 = i1.tolist(), i2.tolist()
    T1 = gathered_t1.tolist() if gathered_t1 is not None else t1
    T2 = gathered_t2.tolist() if gathered_t2 is not None else t2
    return (_ref_direction(p1, T2, T1, i1, i2, offset, tau, local_negatives) +
            _ref_direction(p2, T1, T2, i2, i1, offset, tau, local_negatives))


def _random_case(B, R, D, num_ids, seed):
    g = torch.Generator().manual_seed(seed)
    p1, p2, t1, t2 = (torch.randn(B, R, D, generator=g, dtype=torch.float64) for _ in range(4))
    i1 = torch.randint(0, num_ids, (B, R), generator=g)
    i2 = torch.randint(0, num_ids, (B, R), generator=g)
    return p1, p2, t1, t2, i1, i2


CASES = [(1, 1, 4, 1), (2, 3, 5, 2), (3, 7, 16, 40), (4, 16, 8, 6), (2, 16, 4, 3)]


@pytest.mark.parametrize('local_negatives', [True, False])
@pytest.mark.parametrize('B,R,D,num_ids', CASES)
def test_detcon_b_matches_reference(B, R, D, num_ids, local_negatives):
    p1, p2, t1, t2, i1, i2 = _random_case(B, R, D, num_ids, seed=B * 100 + R)
    if B >= 2:  # one image whose views share no id
        i1[1] = torch.arange(R) % 2
        i2[1] = 2 + torch.arange(R) % 2
    got = detcon_loss(p1, p2, t1, t2, i1, i2, temperature=TAU, local_negatives=local_negatives)
    want = reference_loss(p1, p2, t1, t2, i1, i2, local_negatives=local_negatives)
    assert got.dtype == torch.float64
    assert abs(got.item() - want) < 1e-10 * max(1.0, abs(want))


@pytest.mark.parametrize('local_negatives', [True, False])
def test_detcon_s_matches_reference(local_negatives):
    z1, z2, _, _, i1, i2 = _random_case(3, 8, 6, 4, seed=7)
    got = detcon_s_loss(z1, z2, i1, i2, temperature=TAU, local_negatives=local_negatives)
    want = reference_loss(z1, z2, z1, z2, i1, i2, local_negatives=local_negatives)
    assert abs(got.item() - want) < 1e-10 * max(1.0, abs(want))


def test_float32_close_to_float64_reference():
    p1, p2, t1, t2, i1, i2 = _random_case(4, 16, 32, 5, seed=3)
    got = detcon_loss(*(x.float() for x in (p1, p2, t1, t2)), i1, i2)
    want = reference_loss(p1, p2, t1, t2, i1, i2)
    assert got.dtype == torch.float32
    assert abs(got.item() - want) < 1e-5 * abs(want)


def test_float32_under_autocast():
    p1, p2, t1, t2, i1, i2 = (x.float() if x.is_floating_point() else x
                              for x in _random_case(2, 8, 16, 4, seed=6))
    want = detcon_loss(p1, p2, t1, t2, i1, i2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = detcon_loss(p1.bfloat16(), p2.bfloat16(), t1, t2, i1, i2)
        got_s = detcon_s_loss(p1, p2, i1, i2)
    assert got.dtype == torch.float32 and got_s.dtype == torch.float32
    # Only the bfloat16 rounding of the predictions differs (8 bits of mantissa).
    assert abs(got.item() - want.item()) < 2e-2 * want.item()
    assert abs(got_s.item() - detcon_s_loss(p1, p2, i1, i2).item()) < 1e-6


def test_hand_derived_case():
    # B=1, R=2, D=2, tau=0.1. View-1 ids [5, 5] (a duplicate), view-2 ids [5, 7] (7 unmatched).
    p1 = torch.tensor([[[1., 0.], [0., 1.]]], dtype=torch.float64)
    p2 = torch.tensor([[[3., 4.], [-1., 2.]]], dtype=torch.float64)  # normalised: (0.6, 0.8)
    t1 = torch.tensor([[[1., 0.], [0., 1.]]], dtype=torch.float64)
    t2 = torch.tensor([[[2., 0.], [0., 1.]]], dtype=torch.float64)  # normalised: (1, 0), (0, 1)
    ids1, ids2 = torch.tensor([[5, 5]]), torch.tensor([[5, 7]])
    # 1->2: both queries have id 5, one positive t2[0], both t1 rows excluded, keys {t2[0], t2[1]};
    # each row weight 1/2 (two copies of id 5), mean over 2 rows.
    l_q0 = -(10 - math.log(math.exp(10) + math.exp(0)))  # q=(1,0): s(t2[0])=10, s(t2[1])=0
    l_q1 = -(0 - math.log(math.exp(0) + math.exp(10)))  # q=(0,1): s(t2[0])=0,  s(t2[1])=10
    l_12 = (l_q0 / 2 + l_q1 / 2) / 2
    # 2->1: query (0.6, 0.8) id 5: positives t1[0], t1[1] (s = 6, 8), excluded t2[0];
    # key t2[1]=(0,1) gives s = 8. Query id 7 has no positive (weight 0).
    lse = math.log(math.exp(6) + math.exp(8) + math.exp(8))
    l_21 = -((6 - lse) + (8 - lse)) / 2 / 2
    got = detcon_loss(p1, p2, t1, t2, ids1, ids2, temperature=0.1)
    assert abs(got.item() - (l_12 + l_21)) < 1e-12


def test_no_shared_id_gives_zero_and_single_segment_is_finite():
    p1, p2, t1, t2, _, _ = _random_case(1, 4, 3, 1, seed=1)
    zero = detcon_loss(p1, p2, t1, t2, torch.zeros(1, 4, dtype=torch.long),
                       torch.ones(1, 4, dtype=torch.long))
    assert zero.item() == 0.0
    for local_negatives in (True, False):
        p = p1.clone().requires_grad_()
        ids = torch.zeros(1, 4, dtype=torch.long)
        loss = detcon_loss(p, p2, t1, t2, ids, ids, local_negatives=local_negatives)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(p.grad).all()


def test_gradients_and_detached_targets():
    p1, p2, t1, t2, i1, i2 = (x.requires_grad_() if x.is_floating_point() else x
                              for x in _random_case(2, 4, 3, 3, seed=2))
    detcon_loss(p1, p2, t1, t2, i1, i2).backward()
    assert p1.grad is not None and p1.grad.abs().sum() > 0
    assert t1.grad is None and t2.grad is None
    z1, z2 = t1.detach().clone().requires_grad_(), t2.detach().clone().requires_grad_()
    detcon_s_loss(z1, z2, i1, i2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_module_wrapper():
    p1, p2, t1, t2, i1, i2 = _random_case(2, 4, 3, 3, seed=4)
    want = reference_loss(p1, p2, t1, t2, i1, i2, tau=0.2, local_negatives=False)
    assert abs(DetConLoss(0.2, False)(p1, p2, t1, t2, i1, i2).item() - want) < 1e-10
    want_s = reference_loss(p1, p2, p1, p2, i1, i2, tau=0.2)
    assert abs(DetConLoss(0.2, simclr=True)(p1, p2, i1, i2).item() - want_s) < 1e-10
    with pytest.raises(TypeError, match='takes 4 tensors'):
        DetConLoss(simclr=True)(p1, p2, t1, t2, i1, i2)


def test_input_validation():
    p, ids = torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match='target1'):
        detcon_loss(p, p, torch.randn(2, 5, 3), p, ids, ids)
    with pytest.raises(ValueError, match='ids2'):
        detcon_loss(p, p, p, p, ids, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='integer'):
        detcon_s_loss(p, p, ids.float(), ids)
    with pytest.raises(ValueError, match=r'\[B, R, D\]'):
        detcon_loss(p[0], p[0], p[0], p[0], ids, ids)


def test_input_validation_chunk_rows():
    p, ids = torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match='chunk_rows'):
            detcon_loss(p, p, p, p, ids, ids, chunk_rows=bad)
        with pytest.raises(ValueError, match='chunk_rows'):
            DetConLoss(chunk_rows=bad)


# ----------------------------------------------------------------------------------------------
# The chunked loss against a dense float64 restatement (every query/key pair gets its role from
# explicit loops; masked log-softmax over the allowed keys), values and gradients.
def _dense_direction(q, k_other, k_same, ids_q, ids_other, tau, local_negatives):
    """q [B,R,D] (local = global, one process), k_* [B,R,D]; returns L_{v->v'}."""
    B, R, D = q.shape
    NR = B * R
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731 (test vectors are non-zero)
    keys = torch.cat([unit(k_other).reshape(NR, D), unit(k_same).reshape(NR, D)])  # [2NR, D]
    logits = unit(q).reshape(NR, D) @ keys.t() / tau  # [BR, 2NR]
    positive = torch.zeros(NR, 2 * NR, dtype=torch.bool)
    allowed = torch.ones(NR, 2 * NR, dtype=torch.bool)
    weight = torch.zeros(NR, dtype=torch.float64)
    for b in range(B):
        for r in range(R):
            row, my_id = b * R + r, int(ids_q[b, r])
            for j in range(R):
                other_col, same_col = b * R + j, NR + b * R + j
                positive[row, other_col] = int(ids_other[b, j]) == my_id
                if int(ids_q[b, j]) == my_id or not local_negatives:
                    allowed[row, same_col] = False
                if not local_negatives and not positive[row, other_col]:
                    allowed[row, other_col] = False
            copies = sum(int(ids_q[b, j]) == my_id for j in range(R))
            weight[row] = float(positive[row].any()) / copies
    log_p = torch.log_softmax(logits.masked_fill(~allowed, float('-inf')), dim=1)
    num_pos = positive.sum(1).clamp(min=1)
    row_loss = -torch.where(positive, log_p, torch.zeros_like(log_p)).sum(1) / num_pos
    return (weight * row_loss).sum() / NR


def _dense_loss(p1, p2, t1, t2, i1, i2, tau, local_negatives):
    return (_dense_direction(p1, t2, t1, i1, i2, tau, local_negatives) +
            _dense_direction(p2, t1, t2, i2, i1, tau, local_negatives))


def _leaves(*xs):
    return [x.detach().clone().requires_grad_() for x in xs]


DENSE_CASES = [(2, 3, 5, 2), (3, 7, 16, 40), (4, 16, 8, 6)]


@pytest.mark.parametrize('simclr', [False, True])
@pytest.mark.parametrize('local_negatives', [True, False])
@pytest.mark.parametrize('B,R,D,num_ids', DENSE_CASES)
def test_chunked_loss_and_gradients_match_dense_reference(B, R, D, num_ids, local_negatives,
                                                         simclr):
    p1, p2, t1, t2, i1, i2 = _random_case(B, R, D, num_ids, seed=B * 10 + R)
    i1[1], i2[1] = torch.arange(R) % 2, 2 + torch.arange(R) % 2  # views share no id
    i2[0, 0] = i1[0, -1]  # and image 0 at least one
    invalid = ~(i1[:, :, None] == i2[:, None, :]).any(-1)
    assert invalid.any() and not invalid.all()  # rows without a positive, and rows with one
    if simclr:
        z1, z2 = _leaves(p1, p2)
        want = _dense_loss(z1, z2, z1, z2, i1, i2, TAU, local_negatives)
        want_grads = torch.autograd.grad(want, [z1, z2])
    else:
        q1, q2 = _leaves(p1, p2)
        want = _dense_loss(q1, q2, t1, t2, i1, i2, TAU, local_negatives)
        want_grads = torch.autograd.grad(want, [q1, q2])
    for chunk_rows in (None, 1, 5):  # one chunk, one row per chunk, a chunk that does not divide
        a, b = _leaves(p1, p2)
        if simclr:
            got = detcon_s_loss(a, b, i1, i2, temperature=TAU, local_negatives=local_negatives,
                                chunk_rows=chunk_rows)
        else:
            got = detcon_loss(a, b, t1, t2, i1, i2, temperature=TAU,
                              local_negatives=local_negatives, chunk_rows=chunk_rows)
        got_grads = torch.autograd.grad(got, [a, b])
        assert abs(got.item() - want.item()) <= 1e-12 * max(1.0, abs(want.item()))
        for g, w in zip(got_grads, want_grads):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-13)


def _naive_loss():
    """The dense formulation the chunked one replaced, kept in the memory benchmark script."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools',
                        'analysis', 'bench_detcon_loss_memory.py')
    spec = importlib.util.spec_from_file_location('bench_detcon_loss_memory', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.naive_loss, module.main


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_chunked_equals_naive_formulation(dtype):
    naive_loss, _ = _naive_loss()
    p1, p2, t1, t2, i1, i2 = _random_case(8, 16, 32, 6, seed=9)
    p1, p2, t1, t2 = (x.to(dtype) for x in (p1, p2, t1, t2))
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for local_negatives in (True, False):
        for simclr in (False, True):
            a, b, c, d = _leaves(p1, p2, p1, p2)
            if simclr:
                want = naive_loss(a, b, a, b, i1, i2, TAU, local_negatives)
                got = detcon_s_loss(c, d, i1, i2, local_negatives=local_negatives, chunk_rows=24)
            else:
                want = naive_loss(a, b, t1, t2, i1, i2, TAU, local_negatives)
                got = detcon_loss(c, d, t1, t2, i1, i2, local_negatives=local_negatives,
                                  chunk_rows=24)
            (want + got).backward()  # one backward: the two graphs are disjoint
            assert got.dtype == dtype
            assert abs(got.item() - want.item()) <= tol * abs(want.item())
            for g, w in ((c.grad, a.grad), (d.grad, b.grad)):
                assert (g - w).norm() <= tol * w.norm()


def test_masked_logsumexp_gradcheck():
    """Finite differences of the custom function (queries and keys), with a fully dropped row."""
    from mmdetcon.models.losses.detcon_loss import _MaskedRowLogSumExp
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    cols = torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(5)])
    drop = torch.rand(5, 2, generator=g) < 0.5
    cols[0], drop[0] = torch.tensor([0, 1]), True  # row 0: keys 0 and 1 dropped
    cols[1], drop[1] = torch.tensor([2, 3]), True
    for chunk_rows in (1, 2, 5):
        assert torch.autograd.gradcheck(
            lambda a, b: _MaskedRowLogSumExp.apply(a, b, cols, drop, chunk_rows), (q, k))
    # Against the dense masked logsumexp, and the all-dropped row has no gradient.
    cols4 = torch.arange(4).expand(5, 4).clone()
    drop4 = torch.zeros(5, 4, dtype=torch.bool)
    drop4[2] = True
    lse = _MaskedRowLogSumExp.apply(q, k, cols4, drop4, 2)
    want = torch.logsumexp(q @ k.t(), dim=1)
    torch.testing.assert_close(lse[[0, 1, 3, 4]], want[[0, 1, 3, 4]], rtol=1e-12, atol=0)
    assert torch.isfinite(lse[2])
    grad_q, = torch.autograd.grad(lse[2], q)
    assert grad_q.abs().sum() == 0


def test_no_tensor_larger_than_a_chunk():
    """Forward and backward never produce a tensor larger than one chunk of logits, so memory
    does not grow with the full [B*R, 2*N*R] logits (today's form produced several)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else [out]):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
            return out

    B, R, D = 4, 8, 4
    chunk_rows = B * R // 4
    p1, p2, t1, t2, i1, i2 = _random_case(B, R, D, 3, seed=5)
    for simclr in (False, True):
        a, b = _leaves(p1, p2)
        with Largest() as mode:
            if simclr:
                loss = detcon_s_loss(a, b, i1, i2, chunk_rows=chunk_rows)
            else:
                loss = detcon_loss(a, b, t1, t2, i1, i2, chunk_rows=chunk_rows)
            loss.backward()
        assert mode.largest == chunk_rows * 2 * B * R  # exactly one chunk of logits


@pytest.mark.parametrize('simclr', [False, True])
def test_compiles_fullgraph_without_graph_breaks(simclr):
    """Boolean indexing or .item() would sync with the host (and break the graph)."""
    p1, p2, t1, t2, i1, i2 = _random_case(3, 5, 4, 3, seed=8)
    fn = detcon_s_loss if simclr else detcon_loss
    tensors = (p1, p2) if simclr else (p1, p2, t1, t2)
    kwargs = dict(local_negatives=False, chunk_rows=4)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend='eager')
    a, c = _leaves(*tensors), _leaves(*tensors)
    got, want = compiled(*a, i1, i2, **kwargs), fn(*c, i1, i2, **kwargs)
    got.backward()
    want.backward()
    assert abs(got.item() - want.item()) <= 1e-12 * abs(want.item())
    for x, y in zip(a, c):
        if y.grad is not None:
            torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-15)
    explained = torch._dynamo.explain(fn)(*_leaves(*tensors), i1, i2, **kwargs)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()


def test_memory_benchmark_runs_tiny(tmp_path, capsys):
    _, main = _naive_loss()
    out = tmp_path / 'mem.json'
    main(['--batch', '2', '3', '--masks', '4', '--dim', '8', '--no-rss', '--quiet',
          '--repeats', '1', '--json', str(out)])
    table = capsys.readouterr().out
    assert '| 2 x 4 |' in table and '| 3 x 4 |' in table
    import json
    rows = json.loads(out.read_text())['rows']
    assert [r['batch'] for r in rows] == [2, 3]
    for r in rows:
        # Both keep at least one chunk (here: all) of the logits alive at their peak.
        assert r['naive_alloc'] >= 1.0 and r['chunked_alloc'] >= 1.0
    if os.access('/proc/self/clear_refs', os.W_OK):  # the RSS column's child (Linux)
        main(['--child', 'chunked', '--batch', '2', '--masks', '4', '--dim', '8'])
        assert json.loads(capsys.readouterr().out)['rss_bytes'] >= 0


# ----------------------------------------------------------------------------------------------
# Two processes (gloo) against one process on the concatenated batch.
def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _global_inputs():
    g = torch.Generator().manual_seed(11)
    t = [torch.randn(4, 6, 5, generator=g, dtype=torch.float64) for _ in range(4)]
    ids = [torch.randint(0, 3, (4, 6), generator=g) for _ in range(2)]
    return t, ids


def _losses_and_grads(tensors, ids):
    p1, p2, t1, t2 = (x.clone().requires_grad_() for x in tensors)
    lb = detcon_loss(p1, p2, t1, t2, *ids)
    lb.backward()
    z1, z2 = (x.clone().requires_grad_() for x in tensors[:2])
    ls = detcon_s_loss(z1, z2, *ids)
    ls.backward()
    return dict(b=lb.detach(), s=ls.detach(), gp1=p1.grad, gp2=p2.grad, gz1=z1.grad, gz2=z2.grad)


def _worker(rank, world, port, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world)
    try:
        tensors, ids = _global_inputs()
        B = tensors[0].shape[0] // world
        local = slice(rank * B, (rank + 1) * B)
        res = _losses_and_grads([t[local] for t in tensors], [i[local] for i in ids])
        torch.save(res, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_two_process_parity():
    world = 2
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, _free_port(), tmp), nprocs=world, join=True)
        ranks = [torch.load(os.path.join(tmp, f'rank{r}.pt')) for r in range(world)]
    tensors, ids = _global_inputs()
    single = _losses_and_grads(tensors, ids)
    for key in ('b', 's'):
        mean = sum(r[key] for r in ranks) / world
        assert abs(mean.item() - single[key].item()) < 1e-12
    for key in ('gp1', 'gp2', 'gz1', 'gz2'):
        # Each rank's backward yields the gradient of its own loss (B form) or, through the
        # all-reduce in the gather, of the sum of all rank losses (S form); the single-process
        # loss is their mean, hence the 1/world.
        multi = torch.cat([r[key] for r in ranks]) / world
        torch.testing.assert_close(multi, single[key], rtol=1e-10, atol=1e-13)
