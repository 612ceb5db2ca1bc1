"""tools/benchmark/run.py and mmdetcon.benchmark: probes on features with known answers, stage reuse, configs
at the profile budget, bad input, the in1k-coco plan and the --quick run end to end."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch

from conftest import ROOT, run_tool
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
        return dict(method=method, lr_mult=mult, seed=0, role='sweep',
                    metrics={p: dict(val=val, test=test) for p in probes.PROBES})
    records = [rec('byol', 1.0, 50, 90), rec('byol', 4.0, 60, 10), rec('byol', 16.0, 60, 99),
               dict(rec('random', None, 0, 0), role='main')]
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
    assert [s['kind'] for s in steps[:4]] == ['pretrain', 'export', 'coco', 'linear']
    assert steps[-1]['cmd'][-1] == 'model.backbone.init_cfg=None'
    # the 16 x 256 recipes on 2 nodes of 8 at their own total batch: no lr rescaling
    pre = steps[0]
    wrapper = osp.join(work, 'configs', 'detcon-b_in1k.py')
    assert pre['cmd'][:5] == ['env', 'NNODES=2', 'bash', 'tools/dist_train.sh', wrapper] and pre['cmd'][5] == '8'
    assert (pre['gpus'], pre['nodes'], pre['total_batch'], pre['lr_scaled']) == (16, 2, 4096, False)
    assert '--auto-scale-lr' not in pre['cmd'] and pre['epochs'] == 200
    assert steps[1]['cmd'][-2].endswith('detcon-b/pretrain/epoch_200.pth')
    assert any(a.startswith('model.backbone.init_cfg.checkpoint=') for a in steps[2]['cmd'])
    assert (steps[2]['gpus'], steps[2]['nodes'], steps[2]['total_batch']) == (8, 1, 16)
    assert (steps[3]['gpus'], steps[3]['total_batch'], steps[3]['lr_scaled']) == (8, 4096, False)
    with open(osp.join(work, 'plan.sh')) as f:
        script = f.read()
    # steps on one node run on node 0 of a multi-node plan while the other nodes wait for them
    assert 'if [ "${NODE_RANK:-0}" = 0 ]; then\n  python tools/model_converters/extract_backbone.py' in script
    assert script.count('until [ -e ') == 8  # every step but the two 16-GPU pretrainings
    from mmengine.config import Config
    cfg = Config.fromfile(wrapper)  # DetCon-B's 300-epoch recipe scaled to 200 epochs
    assert cfg.train_cfg.max_epochs == 200 and cfg.default_hooks.checkpoint.interval == 7  # round(10 * 2 / 3)
    assert [(s.type, s.begin, s.end) for s in cfg.param_scheduler] == [('LinearLR', 0, 2),
                                                                      ('CosineAnnealingLR', 2, 200)]
    assert cfg.param_scheduler[1].T_max == 198 and cfg.model.type == 'DetConB'
    cfg = Config.fromfile(osp.join(work, 'configs', 'byol_in1k.py'))  # mmpretrain's recipe under mmdetcon's runner
    assert cfg.runner_type == 'MMDetConRunner' and cfg.model.type == 'BYOL'
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    assert 'ColorJitter' not in str(cfg.train_dataloader).replace('HueSafeColorJitter', '')
    assert "'HueSafeColorJitter'" in str(cfg.train_dataloader)


def test_dist_train_needs_node_rank_and_master_addr_on_several_nodes():
    import subprocess
    env = {k: v for k, v in os.environ.items() if k not in ('NODE_RANK', 'MASTER_ADDR')}
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), 'c.py', '8'], capture_output=True,
                          text=True, env=dict(env, NNODES='2', PYTHON='false'))
    assert proc.returncode == 2 and 'NNODES=2 needs NODE_RANK (0..1) and MASTER_ADDR' in proc.stderr
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), 'c.py', '8'], capture_output=True,
                          text=True, env=dict(env, NNODES='2', NODE_RANK='1', MASTER_ADDR='node0', PYTHON='echo'))
    assert proc.returncode == 0 and '--nnodes=2 --node_rank=1 --master_addr=node0' in proc.stdout


def _name_batch(config: str):
    """(GPUs, images per GPU) from a config name's NxbB."""
    import re
    n, b = re.search(r'_(\d+)xb(\d+)-', osp.basename(config)).groups()
    return int(n), int(b)


def test_in1k_plan_scales_schedules_batches_and_nodes(tmp_path):
    from mmengine.config import Config

    from mmdetcon.benchmark import gpu_plan as gp
    methods = list(gp.IN1K_CONFIGS)
    work = str(tmp_path / 'w')
    gp.write_plan(methods + ['random'], work, epochs=50, gpus=8)
    with open(osp.join(work, 'plan.json')) as f:
        steps = {s['name']: s for s in json.load(f)}
    for method, recipe in gp.IN1K_CONFIGS.items():
        gpus, per_gpu = _name_batch(recipe)
        base = Config.fromfile(gp.recipe_path(recipe))
        cfg = Config.fromfile(osp.join(work, 'configs', f'{method}_in1k.py'))
        # the recipe's batch per GPU, and an lr base that is the recipe's total batch (the wrapper adds SimCLR's)
        assert cfg.train_dataloader.batch_size == per_gpu and cfg.auto_scale_lr.base_batch_size == gpus * per_gpu
        assert ('auto_scale_lr' in base) == (method != 'simclr'), method
        pre = steps[f'{method}/pretrain']
        assert (pre['gpus'], pre['nodes'], pre['total_batch']) == (8, 1, 8 * per_gpu)
        assert pre['lr_scaled'] == (gpus != 8) and ('--auto-scale-lr' in pre['cmd']) == (gpus != 8)
        assert steps[f'{method}/export']['cmd'][-2].endswith(f'{method}/pretrain/epoch_50.pth')
        # 50 epochs, contiguous phases, each boundary the recipe's fraction of the run to within an epoch
        e0 = base.train_cfg.max_epochs
        assert cfg.train_cfg.max_epochs == 50
        old, new = base.param_scheduler, cfg.param_scheduler
        assert [s.type for s in new] == [s.type for s in old] and new[0].begin == 0 and new[-1].end == 50
        for a, b in zip(new, new[1:]):
            assert a.end == b.begin
        for s0, s1 in zip(old, new):
            assert abs(s1.end - s0.end * 50 / e0) <= 0.5 and s1.get('T_max', s1.end - s1.begin) == s1.end - s1.begin
            assert s1.get('convert_to_iter_based') == s0.get('convert_to_iter_based')
        interval = base.default_hooks.checkpoint.get('interval', 1)
        assert cfg.default_hooks.checkpoint.interval == max(1, round(interval * 50 / e0))
    for kind, config in (('coco', gp.COCO_CONFIG), ('linear', gp.LINEAR_CONFIG)):
        cfg = Config.fromfile(osp.join(gp.ROOT, config))
        gpus, per_gpu = gp.RECIPES[kind]
        assert cfg.train_dataloader.batch_size == per_gpu and cfg.auto_scale_lr.base_batch_size == gpus * per_gpu
    # more than one node of GPUs: dist runs one command per node, slurm gets the totals
    plan = {s['name']: s for s in gp.gpu_plan(['detco', 'byol'], 'w', gpus=32)}
    assert plan['detco/pretrain']['cmd'][:2] == ['env', 'NNODES=4'] and plan['detco/pretrain']['cmd'][5] == '8'
    assert plan['detco/pretrain']['total_batch'] == 32 * 32 and plan['detco/pretrain']['lr_scaled']
    slurm = {s['name']: s for s in gp.gpu_plan(['byol'], 'w', launcher='slurm', partition='p', gpus=16)}
    assert slurm['byol/pretrain']['cmd'][:3] == ['env', 'GPUS=16', 'GPUS_PER_NODE=8']
    assert not slurm['byol/pretrain']['lr_scaled'] and slurm['byol/pretrain']['nodes'] == 2
    small = gp.gpu_plan(['random'], 'w', launcher='slurm', partition='p', gpus=4)
    assert small[0]['cmd'][:3] == ['env', 'GPUS=4', 'GPUS_PER_NODE=4'] and small[0]['total_batch'] == 8
    with pytest.raises(ValueError, match='not a multiple of --gpus-per-node 8'):
        gp.gpu_plan(['byol'], 'w', gpus=12)
    # extra cfg-options per kind join the step's one --cfg-options list and count in the total batch
    opts = gp.gpu_plan(['byol'], 'w', gpus=2, step_options={'pretrain': ['train_dataloader.batch_size=4'],
                                                           'linear': ['a=1']})
    assert opts[0]['cmd'][-2:] == ['--cfg-options', 'train_dataloader.batch_size=4'] and opts[0]['total_batch'] == 8
    assert opts[3]['cmd'][-3:] == ['--cfg-options', 'model.backbone.init_cfg.checkpoint=w/byol/backbone.pth', 'a=1']
    assert opts[0]['cmd'].count('--cfg-options') == 1


def test_schedule_scaling_hand_cases():
    from mmengine.config import Config

    from mmdetcon.benchmark.gpu_plan import _schedule
    cfg = Config(dict(train_cfg=dict(max_epochs=300), default_hooks=dict(checkpoint=dict(interval=10)),
                      param_scheduler=[dict(type='LinearLR', begin=0, end=3, by_epoch=True),
                                       dict(type='CosineAnnealingLR', T_max=297, begin=3, end=300),
                                       dict(type='LinearLR', begin=0, end=100, by_epoch=False)]))
    sched, interval = _schedule(cfg, 200)  # x 2/3
    assert [(s['begin'], s['end']) for s in sched] == [(0, 2), (2, 200), (0, 100)]
    assert sched[1]['T_max'] == 198 and interval == 7
    sched, interval = _schedule(cfg, 10)  # 0.1 epoch of warm-up -> one epoch
    assert [(s['begin'], s['end']) for s in sched[:2]] == [(0, 1), (1, 10)] and interval == 1
    sched, _ = _schedule(cfg, 1)  # one epoch: only the warm-up phase has room
    assert [(s['type'], s['begin'], s['end']) for s in sched] == [('LinearLR', 0, 1), ('LinearLR', 0, 100)]
    steps = Config(dict(train_cfg=dict(max_epochs=12), default_hooks=dict(checkpoint=dict()),
                        param_scheduler=dict(type='MultiStepLR', milestones=[8, 11], begin=0, end=12)))
    sched, interval = _schedule(steps, 24)
    assert sched == [dict(type='MultiStepLR', milestones=[16, 22], begin=0, end=24)] and interval == 2


def _imagenet_tree(root: str, classes: int = 2, per_class: int = 2, size: int = 32) -> None:
    """mmpretrain's ImageNet layout: train/<class>/<image>.JPEG and meta/train.txt ("<class>/<image> <label>")."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'meta'))
    lines = []
    for c in range(classes):
        os.makedirs(osp.join(root, 'train', f'n{c:08d}'))
        for i in range(per_class):
            name = f'n{c:08d}/n{c:08d}_{i}.JPEG'
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(osp.join(root, 'train', name))
            lines.append(f'{name} {c}\n')
    with open(osp.join(root, 'meta', 'train.txt'), 'w') as f:
        f.writelines(lines)


def test_baseline_wrappers_draw_a_batch(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import mmdetcon  # noqa: F401  (HueSafeColorJitter)
    from mmdetcon.benchmark.gpu_plan import write_plan
    data = str(tmp_path / 'imagenet')
    _imagenet_tree(data)
    baselines = ['byol', 'mocov2', 'simclr', 'densecl']
    write_plan(baselines, str(tmp_path / 'w'))
    for method in baselines:
        cfg = Config.fromfile(str(tmp_path / 'w' / 'configs' / f'{method}_in1k.py'))
        init_default_scope(cfg.default_scope)
        loader = cfg.train_dataloader
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = data
        batch = next(iter(Runner.build_dataloader(loader, seed=0)))
        views = batch['inputs']
        assert len(views) == 2 and all(v.shape == (2, 3, 224, 224) for v in views), method
        assert len(batch['data_samples']) == 2


def test_launch_plan_times_steps_skips_finished_ones_and_collects_the_table(tmp_path):
    """A plan of stand-in steps over work dirs holding what mmengine's LocalVisBackend writes for mmdet's
    CocoMetric and mmpretrain's Accuracy (scalars.json, or only the LoggerHook's <timestamp>.json)."""
    import sys

    from mmengine.visualization import LocalVisBackend

    from mmdetcon.benchmark.gpu_plan import launch_plan
    work = str(tmp_path / 'w')

    def log(sub: str, stamp: str, lines, scalars_json: bool = True):
        backend = LocalVisBackend(save_dir=osp.join(work, sub, stamp, 'vis_data'))
        for step, values in lines:
            backend.add_scalars(values, step=step, file_path=f'{stamp}.json')
        if not scalars_json:
            os.remove(osp.join(work, sub, stamp, 'vis_data', 'scalars.json'))

    train = dict(lr=0.02, data_time=0.1, loss=1.5, time=0.4, epoch=1, iter=10, memory=100)
    coco = {'coco/bbox_mAP': 0.1, 'coco/bbox_mAP_50': 0.2, 'coco/segm_mAP': 0.05, 'data_time': 0.1, 'time': 1.0}
    log('byol/coco', '20260101_000000', [(10, train), (1, coco)])  # a run that was resumed ...
    log('byol/coco', '20260102_000000', [(20, train), (2, dict(coco, **{'coco/bbox_mAP': 0.352,
                                                                        'coco/segm_mAP': 0.317}))])
    log('byol/linear', '20260103_000000', [(10, train), (1, {'accuracy/top1': 61.25, 'accuracy/top5': 80.0})],
        scalars_json=False)
    log('random/coco', '20260104_000000', [(10, train), (1, {'coco/bbox_mAP': 0.012, 'coco/segm_mAP': -1.0})])
    counter, flag = str(tmp_path / 'runs.txt'), str(tmp_path / 'flag')
    ok = f'open({counter!r}, "a").write("x")'
    fails = f'import os, sys; {ok}; sys.exit(0 if os.path.exists({flag!r}) else 3)'
    steps = [dict(name='byol/pretrain', kind='pretrain', method='byol', cmd=['python', '-c', ok], gpus=16, nodes=2,
                  total_batch=4096, lr_scaled=False, work_dir=osp.join(work, 'byol/pretrain')),
             dict(name='byol/export', kind='export', method='byol', cmd=['python', '-c', ok], gpus=0,
                  work_dir=osp.join(work, 'byol')),
             dict(name='byol/coco-mask-rcnn-1x', kind='coco', method='byol', cmd=['python', '-c', ok], gpus=8,
                  nodes=1, total_batch=16, lr_scaled=False, work_dir=osp.join(work, 'byol/coco')),
             dict(name='byol/in1k-linear', kind='linear', method='byol', cmd=[sys.executable, '-c', ok], gpus=8,
                  nodes=1, total_batch=4096, lr_scaled=False, work_dir=osp.join(work, 'byol/linear')),
             dict(name='random/coco-mask-rcnn-1x', kind='coco', method='random', cmd=['python', '-c', ok], gpus=4,
                  nodes=1, total_batch=8, lr_scaled=True, work_dir=osp.join(work, 'random/coco')),
             dict(name='random/in1k-linear', kind='linear', method='random', cmd=['python', '-c', fails], gpus=8,
                  nodes=1, total_batch=4096, lr_scaled=False, work_dir=osp.join(work, 'random/linear'))]
    with open(osp.join(work, 'plan.json'), 'w') as f:
        json.dump(steps, f)
    with pytest.raises(RuntimeError, match='random/in1k-linear exited 3'):
        launch_plan(work)
    open(flag, 'w').close()
    results = launch_plan(work)  # the five finished steps are skipped, the failed one runs again
    with open(counter) as f:
        assert f.read() == 'x' * 7
    with open(osp.join(work, 'results.json')) as f:
        assert json.load(f) == results
    rows = {r['method']: r for r in results['rows']}
    assert list(rows) == ['byol', 'random']
    assert (rows['byol']['box_ap'], rows['byol']['mask_ap'], rows['byol']['linear_top1']) == (0.352, 0.317, 61.25)
    assert (rows['random']['box_ap'], rows['random']['mask_ap'], rows['random']['linear_top1']) == (0.012, None, None)
    walls = {s['name']: s['wall_s'] for s in results['steps']}
    assert all(w > 0 for w in walls.values()) and len(walls) == 6
    for s in results['steps']:
        assert s['gpu_hours'] == pytest.approx(s['gpus'] * s['wall_s'] / 3600)
    assert rows['byol']['gpu_hours'] == pytest.approx(sum((16, 0, 8, 8)[i] * walls[n] / 3600 for i, n in enumerate(
        ['byol/pretrain', 'byol/export', 'byol/coco-mask-rcnn-1x', 'byol/in1k-linear'])))
    with open(osp.join(work, 'results.md')) as f:
        table = f.read()
    assert f'| byol | 35.2 | 31.7 | 61.25 | {rows["byol"]["gpu_hours"]:.2f} | yes |' in table
    assert '| random | 1.2 | — | — |' in table  # COCOeval's -1 (undefined) is not an AP
    assert '| byol/pretrain | 16 | 2 | 4096 | no |' in table
    assert '| random/coco-mask-rcnn-1x | 4 | 1 | 8 | yes |' in table
    # another node of a multi-node plan runs only the steps that span nodes, after node 0's steps are done
    assert launch_plan(work, env=dict(NODE_RANK='1'), poll_s=0.01) == dict(node_rank=1)
    with open(counter) as f:
        assert f.read() == 'x' * 8
    assert osp.isfile(osp.join(work, 'stages', 'node1', 'byol_pretrain', MARKER))
    # a metric whose log is gone is reported missing, not kept from an earlier table
    shutil.rmtree(osp.join(work, 'byol', 'linear'))
    from mmdetcon.benchmark.gpu_plan import collect_results
    assert {r['method']: r for r in collect_results(work)['rows']}['byol']['linear_top1'] is None


def test_quick_end_to_end_and_redo_of_a_deleted_backbone(tmp_path):
    work = str(tmp_path / 'quick')
    proc = run_tool(['tools/benchmark/run.py', '--quick', '--work-dir', work], timeout=900)
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    main = {r['method']: r for r in results['runs'] if r['role'] == 'main'}
    assert set(main) == {'detcon-b', 'byol', 'random'}
    assert results['command'].endswith(f'--quick --work-dir {work}') and 0 < results['wall_min'] < 15
    for r in main.values():
        assert set(r['metrics']) == set(probes.PROBES) | {'feature_rank'}
        assert all(0 <= r['metrics'][p]['test'] <= 100 for p in probes.PROBES)
        assert 0 < r['metrics']['feature_rank'] <= 8 * PROFILES['quick'].base_channels
    assert main['byol']['images_seen'] == 16 and main['byol']['images_per_s'] > 0
    assert [r['mask_source'] for r in results['runs'] if r['role'] == 'ablation'] == ['grid']
    for name in ('results.md', 'metrics.png', 'mask_ablation.png', 'compute.png', 'lr_sweep.png'):
        assert osp.getsize(osp.join(work, name)) > 0
    assert '| detcon-b | 1 |' in proc.stdout and 'DetCon-B mask source' in proc.stdout
    assert '| detcon-b − byol | 1 |' in proc.stdout and '| byol − random | 1 |' in proc.stdout
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
