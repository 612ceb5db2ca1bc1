"""DetCon loss against an independent float64 restatement of the definition (plain python loops
over query rows with explicit positive / excluded key sets), a hand-derived case, and 2-process
gloo parity with the single-process loss on the concatenated batch."""
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


def test_no_dense_label_tensors():
    """Only the logits may be as large as [B*R, 2*N*R]: record every tensor of that size produced
    by the forward. Dense one-hot labels or masks over all keys would add one per direction."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class BigOutputs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.big = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else [out]):
                if isinstance(t, torch.Tensor) and t.numel() >= limit:
                    self.big.append((str(func), t.dtype))
            return out

    B, R, D = 4, 8, 4
    limit = B * R * 2 * B * R  # the logits of one direction
    p1, p2, t1, t2, i1, i2 = _random_case(B, R, D, 3, seed=5)
    with BigOutputs() as mode:
        detcon_loss(p1.requires_grad_(), p2, t1, t2, i1, i2)
    # Per direction: the logits (matmul) and the in-place write of the exclusions.
    assert len(mode.big) <= 2 * 2, mode.big
    assert all(dtype.is_floating_point for _, dtype in mode.big), mode.big


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
