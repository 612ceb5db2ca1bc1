"""The benchmark's protocol without training: sweeps that grow until the selected lr is inside, further seeds
and the mask ablation at the selected lr, paired 95 % intervals, the feature-rank column and diverged runs."""
import json
import math
import os.path as osp

import pytest
import torch

from mmdetcon.benchmark import benchmark, report
from mmdetcon.benchmark.benchmark import Run, next_lr_mults, run_benchmark
from mmdetcon.benchmark.features import effective_rank
from mmdetcon.benchmark.probes import PROBES
from mmdetcon.benchmark.profiles import PROFILES

# val selection score of each method as a function of the lr multiplier (None: the run diverged)
PEAKS = {
    'detcon-b': lambda m: 50 - abs(math.log2(m) - 8),  # best at x256: two steps up from (4, 16, 64)
    'byol': lambda m: 40 - abs(math.log2(m) - 2),  # best at x4, the low end: one step down
    'simclr': lambda m: None if m > 64 else 30 + math.log2(m),  # x256 diverges: x64 is inside
    'mocov2': lambda m: 20 + math.log2(m),  # rises to the bound: never inside
}


def _record(run: Run) -> dict:
    if run.method == 'random':
        val = 10.0 + run.seed
    else:
        val = PEAKS[run.method](run.lr_mult)
        val = None if val is None else val + 0.1 * run.seed
    if val is None:
        metrics = dict(diverged=True)
    else:  # test = val + a per-method offset, so the paired differences are known exactly
        offset = dict(random=0.0, byol=1.0, simclr=2.0, mocov2=3.0).get(run.method, 5.0)
        metrics = {p: dict(val=val, test=val + offset) for p in PROBES}
        metrics['feature_rank'] = 2.0 + run.seed
    return dict(method=run.method, seed=run.seed, lr_mult=run.lr_mult,
                lr=None if run.lr_mult is None else 0.1 * run.lr_mult,
                mask_source=run.mask_source if run.method.startswith('detcon') else None, images_seen=16,
                wall_s=1.0, cpu_s=1.0, images_per_s=16.0, name=run.name, role=run.role, metrics=metrics)


def test_next_lr_mults_hand_cases():
    bounds = (1 / 16, 1024)
    assert next_lr_mults({4: 1, 16: 2, 64: 3}, bounds) == [256]
    assert next_lr_mults({4: 3, 16: 2, 64: 1}, bounds) == [1]
    assert next_lr_mults({4: 1, 16: 3, 64: 2}, bounds) == []
    assert next_lr_mults({1: 5}, bounds) == [0.25, 4]  # one point: both sides
    assert next_lr_mults({4: 2, 16: 2, 64: 1}, bounds) == [1]  # a tie goes to the lower lr
    assert next_lr_mults({256: 1, 1024: 2}, bounds) == []  # the upper bound stops it
    assert next_lr_mults({4: 0.5, 16: 1.0, 64: float('-inf')}, bounds) == []  # diverged counts as worse
    assert next_lr_mults({4: float('-inf'), 16: float('-inf')}, bounds) == [1]  # all diverged: go down


def test_sweeps_grow_until_the_selected_lr_is_inside(tmp_path, monkeypatch):
    executed = []

    def fake_execute(self, run):
        executed.append(run)
        return _record(run)

    monkeypatch.setattr(benchmark.Benchmark, 'execute', fake_execute)
    messages = []
    profile = PROFILES['quick'].with_(methods=('detcon-b', 'byol', 'simclr', 'mocov2', 'random'),
                                      lr_multipliers=(4.0, 16.0, 64.0), lr_bounds=(1 / 16, 1024.0),
                                      ablation=('grid', 'gt'))
    work = str(tmp_path / 'w')
    results = run_benchmark(profile, work, seeds=3, jobs=2, log=messages.append)
    swept = {}
    for r in executed:
        if r.seed == 0 and r.lr_mult is not None and r.mask_source == 'fh':
            swept.setdefault(r.method, set()).add(r.lr_mult)
    assert swept == {'detcon-b': {4, 16, 64, 256, 1024}, 'byol': {1, 4, 16, 64}, 'simclr': {4, 16, 64, 256},
                     'mocov2': {4, 16, 64, 256, 1024}}
    assert results['selected_lr_mult'] == {'detcon-b': 256, 'byol': 4, 'simclr': 64, 'mocov2': 1024}
    sweeps = results['sweeps']
    assert [m for m, s in sweeps.items() if s['inside']] == ['detcon-b', 'byol', 'simclr']
    assert sweeps['mocov2']['at_bound'] and not sweeps['byol']['at_bound']
    assert sweeps['simclr']['val_score']['256'] is None  # diverged
    assert any('adding lr x256' in m for m in messages)
    # seeds 1 and 2 (and the ablation) only at the selected lr; each run once
    assert len(executed) == len({r.name for r in executed})
    later = {(r.method, r.seed, r.lr_mult, r.mask_source, r.role) for r in executed if r.seed > 0}
    chosen = results['selected_lr_mult']
    expected = {(m, s, chosen[m], 'fh', 'main') for m in chosen for s in (1, 2)}
    expected |= {('detcon-b', s, 256, src, 'ablation') for src in ('grid', 'gt') for s in (1, 2)}
    expected |= {('random', s, None, 'fh', 'main') for s in (1, 2)}
    assert later == expected
    assert {(r.mask_source, r.seed) for r in executed if r.role == 'ablation'} == {
        (src, s) for src in ('grid', 'gt') for s in range(3)}
    main = [r for r in results['runs'] if r['role'] == 'main']
    assert sorted((r['method'], r['seed']) for r in main) == sorted(
        (m, s) for m in list(chosen) + ['random'] for s in range(3))
    # paired differences: test = val + offset and val = f(lr) + 0.1 * seed, so every pair is a constant
    paired = results['paired']
    d = paired['detcon-b − byol']['dense_miou']
    assert d['n'] == 3 and d['mean'] == pytest.approx((50 + 5) - (40 + 1)) and d['hi'] - d['lo'] == pytest.approx(0)
    assert paired['byol − random']['object_top1']['mean'] == pytest.approx(40 + 1 - 10 - 0.9)
    assert set(paired) == {'detcon-b − byol', 'detcon-s − simclr', 'detco − mocov2'} - {
        'detcon-s − simclr', 'detco − mocov2'} | {f'{m} − random' for m in chosen}
    assert results['summary']['byol']['feature_rank'] == dict(mean=3.0, std=1.0, n=3)
    md = open(osp.join(work, 'results.md')).read()
    assert '| byol | ×1 |' not in md and '| byol | 38.0 | **40.0** | 38.0 | 36.0 | – | – | yes |' in md
    assert '| simclr | – | 32.0 | 34.0 | **36.0** | diverged | – | yes |' in md
    assert '| mocov2 | – | 22.0 | 24.0 | 26.0 | 28.0 | **30.0** | no |' in md
    assert 'simclr_lr256_s0' in md and 'Diverged' in md
    assert osp.getsize(osp.join(work, 'lr_sweep.png')) > 0
    with open(osp.join(work, 'results.json')) as f:
        assert json.load(f)['sweeps'] == json.loads(json.dumps(sweeps))


def test_paired_difference_hand_cases():
    # differences 1, 2, 3: mean 2, sd 1; t(0.975, 2) = 4.3027 from a t table
    d = report.paired_difference({0: 1.0, 1: 2.0, 2: 3.0, 5: 9.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d['n'] == 3 and d['mean'] == pytest.approx(2.0)
    assert (d['hi'] - d['mean']) == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert d['lo'] == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-4)
    # two pairs: differences 0 and 2, sd sqrt(2), t(0.975, 1) = 12.706
    d = report.paired_difference({0: 1.0, 1: 3.0}, {0: 1.0, 1: 1.0})
    assert d['hi'] == pytest.approx(1 + 12.706 * math.sqrt(2) / math.sqrt(2), abs=1e-3)
    assert report.paired_difference({0: 1.0}, {0: 0.5}) == dict(mean=0.5, lo=None, hi=None, n=1)
    assert report.paired_difference({0: 1.0}, {1: 0.5}) is None


def test_effective_rank_hand_cases():
    g = torch.Generator().manual_seed(0)
    # k orthonormal directions with equal energy (centred +-1 patterns): rank k
    signs = torch.tensor([[1., 1., 1.], [1., -1., -1.], [-1., 1., -1.], [-1., -1., 1.]])  # orthogonal columns
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    x = signs.double() @ q[:3]  # [4, 8]: three orthogonal directions, equal energy
    assert effective_rank(x.view(4, 8, 1, 1).expand(4, 8, 2, 2)) == pytest.approx(3.0, abs=1e-9)
    # energies 3:1 on two directions: exp(-(3/4 ln 3/4 + 1/4 ln 1/4))
    y = signs[:, :2].double() * torch.tensor([math.sqrt(3), 1.0], dtype=torch.float64)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(y.view(4, 2, 1, 1)) == pytest.approx(expected, abs=1e-9)
    # features on one line (plus a constant offset, which centring removes): rank 1; constant: 0
    line = torch.randn(6, 1, generator=g) * torch.randn(1, 5, generator=g) + 7
    assert effective_rank(line.view(6, 5, 1, 1)) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(torch.ones(4, 3, 2, 2)) == 0.0
    # spatial averaging happens before the rank: a map whose cells cancel is constant
    cancel = torch.zeros(4, 2, 1, 2)
    cancel[:, :, 0, 0] = torch.randn(4, 2, generator=g)
    cancel[:, :, 0, 1] = -cancel[:, :, 0, 0]
    assert effective_rank(cancel) == 0.0


def test_diverged_run_scores_minus_inf_and_is_never_selected():
    ok = dict(method='byol', lr_mult=4.0, seed=0, role='sweep', metrics={p: dict(val=1.0, test=1.0) for p in PROBES})
    bad = dict(method='byol', lr_mult=16.0, seed=0, role='sweep', metrics=dict(diverged=True))
    assert report.selection_score(bad) == float('-inf')
    assert benchmark.select_lr([bad, ok]) == {'byol': 4.0}


def test_evaluate_marks_a_backbone_with_non_finite_weights_diverged(tmp_path):
    from mmpretrain.registry import MODELS

    from mmdetcon.benchmark.pretrain import backbone_cfg
    profile = PROFILES['quick'].with_(methods=('byol', ))
    bench = benchmark.Benchmark(profile, str(tmp_path / 'w'), log=lambda m: None)
    net = MODELS.build(backbone_cfg(profile))
    state = net.state_dict()
    path = str(tmp_path / 'backbone.pth')
    torch.save(state, path)
    (tmp_path / 'ok').mkdir()
    record, files = bench._evaluate(str(tmp_path / 'ok'), path)
    assert set(record['metrics']) == set(PROBES) | {'feature_rank'} and record['metrics']['feature_rank'] > 1
    state['layer4.1.conv2.weight'].fill_(float('nan'))
    torch.save(state, path)
    (tmp_path / 'bad').mkdir()
    record, files = bench._evaluate(str(tmp_path / 'bad'), path)
    assert record['metrics'] == dict(diverged=True) and 'metrics.json' in files
