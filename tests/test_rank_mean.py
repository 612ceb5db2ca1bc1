"""Logged losses and statistics are means over ranks (2 gloo processes); gradients stay local."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.logging import MessageHub

from conftest import free_port
from mmdetcon.models.utils.gather import rank_mean

WORLD = 2


def _spy(module, records):
    """Wrap ``module.rank_mean`` so that the local values it receives are recorded."""
    real = module.rank_mean

    def spy(values):
        records.append({k: v.detach().clone() for k, v in values.items()})
        return real(values)

    module.rank_mean = spy


def _worker(rank, port, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        from mmdetcon.models.algorithms import detco, detcon
        from test_detco import _tiny_detco, _tiny_inputs
        from test_detcon_model import _batch, _cfg

        from mmdetcon.registry import MODELS
        MessageHub.get_current_instance().update_info('max_iters', 10)
        out = {}
        # The helper: a loss with a gradient and a detached statistic.
        x = torch.tensor([rank + 1.0, 2.0 * rank - 3.0], requires_grad=True)
        logged = rank_mean({'loss': (x ** 2).sum(), 'stat': x.detach().mean()})
        logged['loss'].backward()
        out['helper'] = dict(x=x.detach(), grad=x.grad.clone(),
                             logged={k: v.detach() for k, v in logged.items()})
        # The algorithms, each rank on its own batch.
        torch.manual_seed(0)  # same weights on both ranks, as DDP would make them
        model = MODELS.build(_cfg('B'))
        records = []
        _spy(detcon, records)
        torch.manual_seed(10 + rank)
        data = model.data_preprocessor(_batch(seed=rank), True)
        logged = model.loss(**data)
        out['detcon_b'] = dict(local=records[-1], logged={k: v.detach() for k, v in logged.items()})
        torch.manual_seed(0)
        model = _tiny_detco()
        records = []
        _spy(detco, records)
        torch.manual_seed(20 + rank)
        logged = model.loss(_tiny_inputs(), None)
        out['detco'] = dict(local=records[-1], logged={k: v.detach() for k, v in logged.items()})
        torch.save(out, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(free_port(), out_dir), nprocs=WORLD, join=True)
        return [torch.load(os.path.join(out_dir, f'rank{r}.pt'), weights_only=True) for r in range(WORLD)]


def test_helper_logs_the_mean_and_keeps_local_gradients(ranks):
    xs = [r['helper']['x'] for r in ranks]
    expected_loss = sum(float((x.double() ** 2).sum()) for x in xs) / WORLD
    expected_stat = sum(float(x.double().mean()) for x in xs) / WORLD
    for r in ranks:
        assert float(r['helper']['logged']['loss']) == pytest.approx(expected_loss, rel=1e-6)
        assert float(r['helper']['logged']['stat']) == pytest.approx(expected_stat, rel=1e-6)
        assert torch.equal(r['helper']['grad'], 2 * r['helper']['x'])  # d(local loss)/dx, not the mean's


@pytest.mark.parametrize('algo', ['detcon_b', 'detco'])
def test_algorithm_logs_rank_means_of_every_value(ranks, algo):
    locals_ = [r[algo]['local'] for r in ranks]
    keys = set(locals_[0])
    if algo == 'detcon_b':
        assert keys == {'loss', 'masks_v1', 'masks_v2', 'matched_rows'}
    else:
        assert {'loss_s2', 'loss_s5', 'gg_s2', 'll_s5', 'lg_s3'} <= keys and len(keys) == 16
    differs = False
    for key in keys:
        values = [float(l[key]) for l in locals_]
        differs |= values[0] != values[1]
        for r in ranks:
            assert set(r[algo]['logged']) == keys
            assert float(r[algo]['logged'][key]) == pytest.approx(sum(values) / WORLD, rel=1e-6, abs=1e-7), key
    assert differs, 'the ranks computed identical values, so the test cannot tell a mean from a local value'


def test_single_process_returns_values_unchanged():
    values = {'loss': torch.tensor(2.0, requires_grad=True), 'stat': torch.tensor(3.0)}
    assert rank_mean(values) is values
