"""The shared all-gather utilities under a real 2-process gloo group, against single-process autograd."""
import pytest
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


# Collectives a backward could use; the first argument of each is what the calling rank receives.
_COLLECTIVES = ('all_reduce', 'reduce', 'broadcast', 'all_gather', 'all_gather_single',
                'all_gather_into_tensor', 'reduce_scatter', 'reduce_scatter_single', 'reduce_scatter_tensor',
                'all_to_all', 'all_to_all_single')


class _CountBytes:
    """Patch the torch.distributed collectives to sum the bytes each call delivers to this rank."""

    def __init__(self):
        self.bytes, self.calls, self._saved = 0, [], {}

    def __enter__(self):
        for name in _COLLECTIVES:
            fn = getattr(dist, name, None)
            if fn is None:
                continue
            self._saved[name] = fn

            def counted(first, *args, _fn=fn, _name=name, **kwargs):
                tensors = first if isinstance(first, (list, tuple)) else [first]
                self.bytes += sum(t.numel() * t.element_size() for t in tensors)
                self.calls.append(_name)
                return _fn(first, *args, **kwargs)

            setattr(dist, name, counted)
        return self

    def __exit__(self, *exc):
        for name, fn in self._saved.items():
            setattr(dist, name, fn)


def _worker(rank, port, out):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=W)
    try:
        xs, weights = _inputs()
        x = xs[rank].clone().requires_grad_(True)
        gathered = gather_with_grad(x)
        loss = _rank_loss(gathered, weights[rank])
        with _CountBytes() as counter:
            loss.backward()
        out[rank] = torch.cat([gathered.detach().flatten(), x.grad.flatten(),
                               concat_all_gather(x.detach() * 2).flatten()])
        out[f'bytes{rank}'] = (counter.bytes, counter.calls)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_rank_out():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(free_port(), out), nprocs=W, join=True)
    return dict(out)


def test_gather_values_and_gradients_match_single_process(two_rank_out):
    out = two_rank_out

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


def test_backward_receives_one_slice_not_the_stack(two_rank_out):
    """The backward delivers each rank its own [B, D] gradient sum: 1/W of the [W, B, D] stack that an
    all-reduce of every rank's gradient would deliver (float64 here)."""
    all_reduce_bytes = W * B * D * 8
    for rank in range(W):
        received, calls = two_rank_out[f'bytes{rank}']
        assert received * W == all_reduce_bytes, (received, calls)


def test_without_process_group_returns_input():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert concat_all_gather(x) is x
