"""tools/benchmark/run.py and mmdetcon.benchmark: probes on features with known answers, stage reuse, configs
at the profile budget, bad input, the in1k-coco plan and the --quick run end to end."""
import json
import os
import os.path as osp

import pytest
import torch

from conftest import run_tool
from mmdetcon.benchmark import probes
from mmdetcon.benchmark.benchmark import select_lr
from mmdetcon.benchmark.profiles import METHODS, PROFILES
from mmdetcon.benchmark.stages import MARKER, run_stage

K = 4  # object classes in the synthetic probe problems


def _block_scenes(n: int, seed: int = 0, cells: int = 4, cell_px: int = 4):
    """Images of cells x cells blocks of cell_px pixels; each block is background or one object of class 1..K
    (one instance per block). Returns semantic and instance maps (n, H, W) and per-cell classes (n, cells, cells)."""
    g = torch.Generator().manual_seed(seed)
    cell_cls = torch.randint(0, K + 1, (n, cells, cells), generator=g)
    sem = cell_cls.repeat_interleave(cell_px, 1).repeat_interleave(cell_px, 2)
    ids = (torch.arange(cells * cells).view(cells, cells) + 1).expand(n, -1, -1)
    inst = torch.where(cell_cls > 0, ids, torch.zeros_like(ids)).repeat_interleave(cell_px, 1)
    inst = inst.repeat_interleave(cell_px, 2)
    multi = torch.stack([torch.stack([(c == k).any() for k in range(1, K + 1)]) for c in cell_cls]).float()
    return dict(semantic=sem, instance=inst, multilabel=multi, num_classes=torch.tensor(K)), cell_cls


def _features(cell_cls: torch.Tensor, informative: bool, seed: int, dims: int = 16) -> torch.Tensor:
    """(n, dims, cells, cells): the one-hot class of each cell (+ noise), or noise only."""
    g = torch.Generator().manual_seed(100 + seed)
    noise = torch.randn(*cell_cls.shape, dims, generator=g) * 0.3
    if informative:
        noise[..., :K + 1] += 3 * torch.nn.functional.one_hot(cell_cls, K + 1).float()
    else:
        noise = torch.randn(*cell_cls.shape, dims, generator=g)
    return noise.permute(0, 3, 1, 2)


def _problem(informative: bool):
    labels, feats = {}, {}
    for i, (split, n) in enumerate((('train', 96), ('val', 48), ('test', 48))):
        labels[split], cells = _block_scenes(n, seed=i)
        feats[split] = _features(cells, informative, seed=i)
    return feats, labels


@pytest.mark.parametrize('name', list(probes.PROBES))
def test_probe_recovers_label_features_and_not_noise(name):
    probe = probes.PROBES[name]
    good = probe(*_problem(True), weight_decays=(1e-4, 1e-2), iters=60)
    bad = probe(*_problem(False), weight_decays=(1e-4, 1e-2), iters=60)
    # dense: bilinearly upsampled logits of a linear head blur one pixel at block edges (~93 % at best here)
    assert min(good['test'], good['val']) > (90 if name == 'dense_miou' else 97), good
    _, labels = _problem(False)
    test = labels['test']
    if name == 'object_top1':  # chance: always the most frequent class
        classes = probes.mask_pooled(torch.zeros(48, 1, 4, 4), test['instance'], test['semantic'])[1]
        assert bad['test'] < 100 * torch.bincount(classes).max().item() / len(classes) + 10, bad
    elif name == 'dense_miou':  # everything predicted as the most frequent class: its IoU / (K + 1)
        frac = torch.bincount(test['semantic'].reshape(-1)).max().item() / test['semantic'].numel()
        assert bad['test'] < 100 * frac / (K + 1) + 10, bad
    else:  # random scores: AP ~ the positive rate
        assert bad['test'] < 100 * test['multilabel'].mean().item() + 20, bad
    assert set(good['val_by_wd']) == {'0.0001', '0.01'} and good['wd'] in (1e-4, 1e-2)


def test_mask_pooling_hand_case():
    f = torch.arange(8.).view(1, 2, 2, 2)  # channels 0: [[0,1],[2,3]], 1: [[4,5],[6,7]]
    inst = torch.zeros(1, 4, 4, dtype=torch.long)
    inst[0, :2, :2] = 1  # all of cell (0,0)
    inst[0, :2, 2] = 1  # half of cell (0,1)
    inst[0, 3, 3] = 2  # a quarter of cell (1,1)
    sem = torch.where(inst == 1, 3, torch.where(inst == 2, 1, 0))
    pooled, classes = probes.mask_pooled(f, inst, sem)
    # instance 1: (1 * f00 + 0.5 * f01) / 1.5 ; instance 2: f11
    assert torch.allclose(pooled[0], torch.tensor([(0 + 0.5 * 1) / 1.5, (4 + 0.5 * 5) / 1.5]))
    assert torch.allclose(pooled[1], torch.tensor([3., 7.]))
    assert classes.tolist() == [2, 0]


def test_miou_and_map_hand_cases():
    target = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2: inter 0, union 1
    assert probes.miou(pred, target, 3) == pytest.approx(100 * (1 / 3 + 2 / 3 + 0) / 3)
    scores = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    target = torch.tensor([[1., 0.], [0., 1.], [0., 0.]])
    # class 0: positive ranked 1st -> AP 1; class 1: positive ranked 1st -> AP 1; all-negative class excluded
    assert probes.mean_ap(scores, target) == pytest.approx(100.0)
    target2 = torch.tensor([[0., 1.], [1., 0.], [0., 0.]])
    # class 0: positive 2nd of 3 -> precision 1/2; class 1: positive 3rd -> 1/3
    assert probes.mean_ap(scores, target2) == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)


def test_select_lr_uses_val_scores_only():
    def rec(method, mult, val, test):
        return dict(method=method, lr_mult=mult, metrics={p: dict(val=val, test=test) for p in probes.PROBES})
    records = [rec('byol', 1.0, 50, 90), rec('byol', 4.0, 60, 10), rec('byol', 16.0, 60, 99),
               rec('random', None, 0, 0)]
    assert select_lr(records) == {'byol': 4.0}  # best val; the first on ties; test never looked at


def test_stage_reused_then_redone_when_its_file_is_deleted(tmp_path):
    calls, messages = [], []

    def work(d):
        calls.append(d)
        with open(osp.join(d, 'out.txt'), 'w') as f:
            f.write(str(len(calls)))
        return dict(n=len(calls)), ['out.txt']

    stage = str(tmp_path / 'stage')
    assert run_stage(stage, work, messages.append) == dict(n=1, reused=False)
    assert run_stage(stage, work, messages.append) == dict(n=1, reused=True)
    os.remove(osp.join(stage, 'out.txt'))
    assert run_stage(stage, work, messages.append) == dict(n=2, reused=False)
    assert 'out.txt missing or changed; redoing' in messages[-1]
    with open(osp.join(stage, MARKER), 'w') as f:
        f.write('{broken')
    assert run_stage(stage, work, messages.append)['n'] == 3 and 'unreadable' in messages[-1]


def test_every_method_config_fits_the_default_budget():
    from mmpretrain.registry import MODELS

    from mmdetcon.benchmark.pretrain import pretrain_config
    profile = PROFILES['default']
    for method in [m for m in METHODS if m != 'random']:
        cfg = pretrain_config(method, profile, 4.0, 3, 'data/x')
        base = pretrain_config(method, profile, 1.0, 3, 'data/x')
        assert cfg.optim_wrapper.optimizer.lr == pytest.approx(4 * base.optim_wrapper.optimizer.lr)
        assert cfg.train_dataloader.batch_size == 32 and cfg.train_cfg.max_epochs == profile.epochs
        ds = cfg.train_dataloader.dataset
        assert ds.num_images == 4096 and ds.shape_only
        assert {k: tuple(ds[k]) if isinstance(ds[k], list) else ds[k] for k in profile.scene()} == profile.scene()
        assert max(s['end'] for s in cfg.param_scheduler) == profile.epochs
        assert cfg.custom_hooks == [] and cfg.randomness.seed == 3
        text = cfg.pretty_text
        assert 'scale=96' not in text and 'crop_size=96' not in text  # every view resized to 64 px
        assert 'scale=64' in text or 'crop_size=63' in text
        model = MODELS.build(cfg.model)
        x = torch.zeros(2, 3, 64, 64)
        out = model.backbone(x)[-1]
        assert out.shape[-2:] == (4, 4) and out.shape[1] == 8 * profile.base_channels, method
    grid = pretrain_config('detcon-b', profile, 1.0, 0, 'd', 'grid').train_dataloader.dataset
    assert grid.with_masks is None and any(t['type'] == 'GridMask' for t in grid.pipeline)
    gt = pretrain_config('detcon-b', profile, 1.0, 0, 'd', 'gt').train_dataloader.dataset
    assert gt.with_masks == 'instance'
    with pytest.raises(ValueError, match='DetCon only'):
        pretrain_config('byol', profile, 1.0, 0, 'd', 'gt')
    from mmdetcon.benchmark.detection import detection_config  # the fine-tune reads the same scenes
    det = detection_config(profile, 'b.pth', 'd', 1, 0)
    for loader in (det.train_dataloader, det.val_dataloader):
        ds = loader.dataset
        assert {k: tuple(ds[k]) if isinstance(ds[k], list) else ds[k] for k in profile.scene()} == profile.scene()


@pytest.mark.parametrize('args, message', [
    (['--methods', 'byol', 'detconb'], "unknown method 'detconb'"),
    (['--checkpoint', 'mine=/nonexistent/epoch_5.pth'], 'checkpoint not found: /nonexistent/epoch_5.pth'),
    (['--set', 'epochs=ten'], "'ten' is not a valid epochs"),
    (['--profile', 'in1k-coco', '--launcher', 'slurm'], '--launcher slurm needs --partition'),
])
def test_bad_input_one_line(args, message, tmp_path):
    proc = run_tool(['tools/benchmark/run.py', '--work-dir', str(tmp_path / 'w')] + args, check=False)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr


def test_in1k_coco_plan(tmp_path):
    work = str(tmp_path / 'plan')
    proc = run_tool(['tools/benchmark/run.py', '--profile', 'in1k-coco', '--work-dir', work,
                     '--methods', 'detcon-b', 'byol', 'random'])
    assert 'plan written to' in proc.stdout
    with open(osp.join(work, 'plan.json')) as f:
        steps = json.load(f)
    names = [s['name'] for s in steps]
    assert names == [f'{m}/{s}' for m in ('detcon-b', 'byol') for s in
                     ('pretrain', 'export', 'coco-mask-rcnn-1x', 'in1k-linear')] + [
                         'random/coco-mask-rcnn-1x', 'random/in1k-linear']
    assert steps[-1]['cmd'][-1] == 'model.backbone.init_cfg=None'
    pre = steps[0]['cmd']
    assert pre[:3] == ['bash', 'tools/dist_train.sh',
                       'configs/detcon/detcon-b_resnet50_16xb256-lars-coslr-300e_in1k.py']
    assert steps[1]['cmd'][-2].endswith('detcon-b/pretrain/epoch_300.pth')
    assert any(a.startswith('model.backbone.init_cfg.checkpoint=') for a in steps[2]['cmd'])
    wrapper = osp.join(work, 'configs', 'byol_in1k.py')
    from mmengine.config import Config
    cfg = Config.fromfile(wrapper)  # mmpretrain's recipe under mmdetcon's runner
    assert cfg.runner_type == 'MMDetConRunner' and cfg.model.type == 'BYOL'


def test_quick_end_to_end_and_redo_of_a_deleted_backbone(tmp_path):
    work = str(tmp_path / 'quick')
    proc = run_tool(['tools/benchmark/run.py', '--quick', '--work-dir', work], timeout=900)
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    main = {r['method']: r for r in results['runs'] if r['role'] == 'main'}
    assert set(main) == {'detcon-b', 'byol', 'random'}
    for r in main.values():
        assert set(r['metrics']) == set(probes.PROBES)
        assert all(0 <= v['test'] <= 100 for v in r['metrics'].values())
    assert main['byol']['images_seen'] == 16 and main['byol']['images_per_s'] > 0
    assert [r['mask_source'] for r in results['runs'] if r['role'] == 'ablation'] == ['grid']
    for name in ('results.md', 'metrics.png', 'mask_ablation.png', 'compute.png'):
        assert osp.getsize(osp.join(work, name)) > 0
    assert '| detcon-b | 1 |' in proc.stdout and 'DetCon-B mask source' in proc.stdout
    # a deleted export is retrained and re-evaluated, never reported from the stale record; a pretraining
    # checkpoint of the user's joins as an extra row (exported by the converter)
    os.remove(osp.join(work, 'runs', 'byol_lr1_s0', 'backbone.pth'))
    from mmpretrain.registry import MODELS

    from mmdetcon.benchmark.pretrain import backbone_cfg
    net = MODELS.build(backbone_cfg(PROFILES['quick']))
    mine = str(tmp_path / 'mine.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in net.state_dict().items()}), mine)
    again = run_tool(['tools/benchmark/run.py', '--quick', '--work-dir', work, '--checkpoint', f'mine={mine}'],
                     timeout=900)
    assert 'byol_lr1_s0: finished earlier but backbone.pth missing or changed; redoing' in again.stdout
    assert osp.isfile(osp.join(work, 'runs', 'byol_lr1_s0', 'eval', 'metrics.json'))
    assert '| mine | 1 |' in again.stdout
    # tables regenerate from results.json alone
    os.remove(osp.join(work, 'results.md'))
    run_tool(['tools/benchmark/run.py', '--report', osp.join(work, 'results.json')])
    assert osp.isfile(osp.join(work, 'results.md'))
    # another budget in the same work dir is refused
    other = run_tool(['tools/benchmark/run.py', '--quick', '--work-dir', work, '--set', 'epochs=2'], check=False)
    assert other.returncode == 1 and 'other settings (epochs differ)' in other.stderr
    # the supervised reference row reads the work dir's profile and data and scores with the same probes
    out = str(tmp_path / 'ceiling.json')
    ceiling = run_tool(['tools/analysis/benchmark_ceiling.py', '--work-dir', work, '--steps', '3', '--json', out])
    with open(out) as f:
        record = json.load(f)
    assert record['steps'] == 3 and set(record['metrics']) == set(probes.PROBES)
    assert 'supervised reference, 3 steps of 8' in ceiling.stdout
    missing = run_tool(['tools/analysis/benchmark_ceiling.py', '--work-dir', str(tmp_path / 'none')], check=False)
    assert missing.returncode == 1 and 'profile.json not found' in missing.stderr


def test_chance_levels_hand_case():
    sem = torch.tensor([[[0, 0], [1, 2]]])
    inst = torch.tensor([[[0, 0], [1, 2]]])
    labels = dict(semantic=sem, instance=inst, multilabel=torch.tensor([[1., 1., 0.]]), num_classes=torch.tensor(3))
    chance = probes.chance_levels(labels)
    # all-background prediction: IoU 2/4 for class 0, 0 for classes 1 and 2 (each in the target)
    assert chance['dense_miou'] == pytest.approx(100 * 0.5 / 3, abs=1e-3)
    assert chance['object_top1'] == pytest.approx(50.0)  # two instances, classes 0 and 1
    assert chance['multilabel_map'] == pytest.approx(100.0)  # both present classes are positive in the image
