"""The shared all-gather utilities under a real 2-process gloo group, against single-process autograd."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import free_port
from mmdetcon.models.utils import concat_all_gather, gather_with_grad

W, B, D = 2, 3, 4


def _inputs():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(W, B, D, generator=g, dtype=torch.float64)
    weights = torch.randn(W, W * B, D, generator=g, dtype=torch.float64)  # a different loss on every rank
    return xs, weights


def _rank_loss(gathered, weight):
    return (torch.tanh(gathered) * weight).sum() + gathered.pow(2).sum() * 0.5


def _worker(rank, port, out):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=W)
    try:
        xs, weights = _inputs()
        x = xs[rank].clone().requires_grad_(True)
        gathered = gather_with_grad(x)
        _rank_loss(gathered, weights[rank]).backward()
        out[rank] = torch.cat([gathered.detach().flatten(), x.grad.flatten(),
                               concat_all_gather(x.detach() * 2).flatten()])
    finally:
        dist.destroy_process_group()


def test_gather_values_and_gradients_match_single_process():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(free_port(), out), nprocs=W, join=True)

    xs, weights = _inputs()
    full = xs.reshape(W * B, D).clone().requires_grad_(True)
    total = sum(_rank_loss(full, weights[r]) for r in range(W))  # what all ranks optimise together
    total.backward()
    n = W * B * D
    for rank in range(W):
        res = out[rank]
        assert torch.equal(res[:n].reshape(W * B, D), xs.reshape(W * B, D))
        expect_grad = full.grad[rank * B:(rank + 1) * B]
        assert torch.allclose(res[n:n + B * D].reshape(B, D), expect_grad, atol=1e-12)
        assert torch.equal(res[n + B * D:].reshape(W * B, D), 2 * xs.reshape(W * B, D))


def test_without_process_group_returns_input():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert concat_all_gather(x) is x
