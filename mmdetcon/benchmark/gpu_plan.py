"""The real-scale protocol (``--profile in1k-coco``) as a command plan: per method, ImageNet pretraining with its
in1k config -> ``extract_backbone.py`` -> COCO Mask R-CNN 1x and ImageNet linear evaluation, launched through
``tools/dist_train.sh`` (one command per node) or ``tools/slurm_train.sh``. Each step is a stage, so ``--launch``
resumes a plan; at its end the metrics of every step's work dir are collected into ``results.json`` / ``results.md``.

Every method pretrains for the same ``epochs`` through a wrapper config (``<work_dir>/configs/<method>_in1k.py``)
that inherits the method's own recipe and rescales its schedule. A step keeps its recipe's batch per GPU; when its
total batch differs from the recipe's (another GPU count), ``--auto-scale-lr`` rescales the lr linearly.
"""
import glob
import json
import math
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple

from .profiles import ROOT
from .stages import load_done, run_stage, write_json_atomic

# mmpretrain's own recipes for the baselines; wrappers import mmdetcon (its safe checkpoint loader) and use its
# runner (exact resume, skipped files), so that --resume and extract_backbone work on torch >= 2.6.
IN1K_CONFIGS: Dict[str, str] = {
    'detcon-b': 'configs/detcon/detcon-b_resnet50_16xb256-lars-coslr-300e_in1k.py',
    'detcon-s': 'configs/detcon/detcon-s_resnet50_16xb256-lars-coslr-1000e_in1k.py',
    'detco': 'configs/detco/detco_resnet50_8xb32-coslr-200e_in1k.py',
    'byol': 'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py',
    'mocov2': 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
    'simclr': 'mmpretrain::simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py',
    'densecl': 'mmpretrain::densecl/densecl_resnet50_8xb32-coslr-200e_in1k.py',
}
COCO_CONFIG = 'configs/benchmarks/mmdet/mask-rcnn_r50_fpn_ms-1x_coco.py'
LINEAR_CONFIG = 'configs/benchmarks/mmpretrain/resnet50_8xb512-linear-lars-coslr-90e_in1k.py'
# (GPUs, images per GPU) the recipes were written for: the pretraining configs' names NxbB, mmdet's 1x
# (8 x 2) and the linear protocol (8 x 512). Their auto_scale_lr.base_batch_size is the product.
RECIPES: Dict[str, Tuple[int, int]] = {
    'detcon-b': (16, 256), 'detcon-s': (16, 256), 'detco': (8, 32), 'byol': (16, 256), 'mocov2': (8, 32),
    'simclr': (16, 256), 'densecl': (8, 32), 'coco': (8, 2), 'linear': (8, 512)}
STEP_KINDS = ('pretrain', 'export', 'coco', 'linear')
METRICS = {'coco': ('coco/bbox_mAP', 'coco/segm_mAP'), 'linear': ('accuracy/top1',)}


def recipe_path(config: str) -> str:
    """The file of a config named relative to the repository or as ``package::path`` (as mmengine finds it)."""
    from mmengine.config import Config
    return Config._get_cfg_path(config, '')[0] if '::' in config else osp.join(ROOT, config)


def _load(config: str):
    from mmengine.config import Config
    return Config.fromfile(recipe_path(config), import_custom_modules=False)


def _schedule(cfg, epochs: int) -> Tuple[List[dict], int]:
    """The recipe's param_scheduler and checkpoint interval rescaled from its max_epochs to ``epochs``.

    Epoch boundaries (begin, end, milestones, T_max) scale by epochs / max_epochs and round to whole epochs; a
    warm-up keeps at least one epoch; a phase left empty (fewer epochs than phases) is dropped. Iteration-based
    schedulers (``by_epoch=False``) are kept as they are.
    """
    base = cfg.train_cfg.max_epochs
    scale = Fraction(epochs, base)

    def at(value) -> int:
        return min(epochs, max(1, round(Fraction(value) * scale))) if value else 0

    schedulers = cfg.param_scheduler if isinstance(cfg.param_scheduler, (list, tuple)) else [cfg.param_scheduler]
    out = []
    for sched in schedulers:
        sched = sched.to_dict() if hasattr(sched, 'to_dict') else dict(sched)
        if not sched.get('by_epoch', True):
            out.append(sched)
            continue
        old = (sched.get('begin', 0), sched.get('end', base))
        sched['begin'], sched['end'] = at(old[0]), at(min(old[1], base))
        if sched['end'] <= sched['begin']:
            continue
        if 'T_max' in sched:
            sched['T_max'] = (sched['end'] - sched['begin'] if sched['T_max'] == old[1] - old[0]
                              else max(1, round(Fraction(sched['T_max']) * scale)))
        if 'milestones' in sched:
            sched['milestones'] = [at(m) for m in sched['milestones']]
        out.append(sched)
    interval = cfg.default_hooks.checkpoint.get('interval', 1)
    return out, min(epochs, max(1, round(Fraction(interval) * scale)))


def _py(obj: Any, indent: int = 0, width: int = 110) -> str:
    """A config value as Python source (dicts as ``dict(...)``), on one line when it fits in ``width``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"float('{obj}')"
    if not isinstance(obj, (dict, list, tuple)):
        return repr(obj)
    named = isinstance(obj, dict) and all(isinstance(k, str) and k.isidentifier() for k in obj)
    if isinstance(obj, dict):
        items = [f'{k}={_py(v)}' if named else f'{k!r}: {_py(v)}' for k, v in obj.items()]
    else:
        items = [_py(v) for v in obj]
    opening, closing = ('dict(', ')') if named else ('{', '}') if isinstance(obj, dict) else (
        ('[', ']') if isinstance(obj, list) else ('(', ',)' if len(obj) == 1 else ')'))
    flat = opening + ', '.join(items) + closing
    if indent + len(flat) <= width or not items:
        return flat
    pad = ' ' * (indent + 4)
    if isinstance(obj, dict):
        items = [f'{k}={_py(v, indent + 4)}' if named else f'{k!r}: {_py(v, indent + 4)}' for k, v in obj.items()]
    else:
        items = [_py(v, indent + 4) for v in obj]
    return opening + '\n' + ''.join(f'{pad}{i},\n' for i in items) + ' ' * indent + closing.lstrip(',')


def _numpy2_safe(node: Any) -> Any:
    """A copy of a pipeline without mmengine's ``_scope_`` tags, mmpretrain's ColorJitter (whose hue op raises
    OverflowError on numpy 2) replaced by mmdetcon's HueSafeColorJitter."""
    if isinstance(node, dict):
        out = {k: _numpy2_safe(v) for k, v in node.items() if k != '_scope_'}
        if out.get('type') == 'ColorJitter':
            out['type'] = 'HueSafeColorJitter'
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(_numpy2_safe(v) for v in node)
    return node


def wrapper_config(method: str, epochs: int) -> str:
    """Source of the wrapper that pretrains ``method`` with its recipe for ``epochs`` epochs."""
    config = IN1K_CONFIGS[method]
    cfg = _load(config)
    schedulers, interval = _schedule(cfg, epochs)
    base = config if config.startswith('mmpretrain::') else osp.join(ROOT, config)
    lines = [f'# {method}: {config} pretrained for {epochs} epochs (recipe: {cfg.train_cfg.max_epochs}); written '
             'by tools/benchmark/run.py --profile in1k-coco', f'_base_ = {base!r}', '']
    if config.startswith('mmpretrain::'):
        lines += [
            "custom_imports = dict(imports=['mmdetcon'], allow_failed_imports=False)",
            "runner_type = 'MMDetConRunner'",
            '# mmengine tags the inherited collate_fn with _scope_, which default_collate() does not take; the',
            "# pipeline is the recipe's with ColorJitter -> HueSafeColorJitter (numpy 2).",
            'train_dataloader = dict(',
            "    collate_fn=dict(_delete_=True, type='default_collate'),",
            f'    dataset=dict(pipeline={_py(_numpy2_safe(cfg.train_dataloader.dataset.pipeline), 4)}))',
        ]
        if 'auto_scale_lr' not in cfg:
            gpus, per_gpu = RECIPES[method]
            lines.append(f'auto_scale_lr = dict(base_batch_size={gpus * per_gpu})  # the recipe\'s {gpus} x '
                         f'{per_gpu}')
    lines += ['', f'train_cfg = dict(max_epochs={epochs})', f'param_scheduler = {_py(schedulers)}',
              f'default_hooks = dict(checkpoint=dict(interval={interval}))', '']
    return '\n'.join(lines)


def _option(options: List[str], key: str) -> Optional[str]:
    for item in reversed(options):
        k, sep, v = item.partition('=')
        if sep and k == key:
            return v
    return None


def _layout(gpus: int, gpus_per_node: int, nodes: Optional[int], launcher: str) -> Tuple[int, int]:
    """(nodes, GPUs per node) for ``gpus`` in total."""
    if gpus < 1 or gpus_per_node < 1:
        raise ValueError('--gpus and --gpus-per-node must be >= 1')
    if nodes:
        if gpus % nodes:
            raise ValueError(f'--gpus {gpus} does not split over {nodes} nodes')
        return nodes, gpus // nodes
    per_node = min(gpus, gpus_per_node)
    if gpus % per_node and launcher == 'dist':
        raise ValueError(f'--gpus {gpus} is not a multiple of --gpus-per-node {gpus_per_node} '
                         '(tools/dist_train.sh starts the same number of processes on every node)')
    return -(-gpus // per_node), per_node


def gpu_plan(methods: List[str], work_dir: str, launcher: str = 'dist', partition: Optional[str] = None,
             gpus: Optional[int] = None, nodes: Optional[int] = None, epochs: int = 200,
             step_options: Optional[Dict[str, List[str]]] = None, gpus_per_node: int = 8) -> List[dict]:
    """Steps (commands run from the repository root), in order, for every method.

    Each step: ``name, kind, method, cmd, gpus, work_dir``; training steps add ``nodes``, ``gpus_per_node``,
    ``total_batch``, ``recipe_batch`` and ``lr_scaled`` (``--auto-scale-lr`` passed), pretraining ``epochs``.
    ``gpus`` is the total per training step (default: each recipe's); over ``gpus_per_node`` it spans nodes.
    ``step_options`` maps a kind ('pretrain', 'coco', 'linear') to ``KEY=VALUE`` items appended to the step's
    ``--cfg-options``, and ``'<kind>/<method>'`` to items appended after those for that method's step only
    (keys that differ between recipes, e.g. a pipeline's crop size). The pretraining configs are the wrappers
    that ``write_plan`` writes.
    """
    if launcher == 'slurm' and not partition:
        raise ValueError('--launcher slurm needs --partition')
    if epochs < 1:
        raise ValueError('--epochs must be >= 1')
    step_options = step_options or {}
    unknown = {k for k in step_options if k.split('/')[0] not in ('pretrain', 'coco', 'linear')}
    if unknown:
        raise ValueError(f'step_options: unknown step kinds {sorted(unknown)}')

    def train(kind: str, method: str, config: str, recipe: str, work: str, options: List[str]) -> dict:
        recipe_gpus, per_gpu = RECIPES[recipe]
        n = gpus or recipe_gpus
        n_nodes, per_node = _layout(n, gpus_per_node, nodes, launcher)
        options = options + list(step_options.get(kind, [])) + list(step_options.get(f'{kind}/{method}', []))
        per_gpu = int(_option(options, 'train_dataloader.batch_size') or per_gpu)
        lr_scaled = n * per_gpu != recipe_gpus * RECIPES[recipe][1]
        args = (['--auto-scale-lr'] if lr_scaled else []) + (['--cfg-options'] + options if options else [])
        if launcher == 'slurm':
            cmd = ['env', f'GPUS={n}', f'GPUS_PER_NODE={per_node}', 'bash', 'tools/slurm_train.sh', partition,
                   f'{method}-{kind}', config, work] + args
        else:  # one command per node; NODE_RANK and MASTER_ADDR come from each node's environment
            cmd = ((['env', f'NNODES={n_nodes}'] if n_nodes > 1 else []) +
                   ['bash', 'tools/dist_train.sh', config, str(per_node), '--work-dir', work] + args)
        return dict(name=f'{method}/{STEP_NAMES[kind]}', kind=kind, method=method, cmd=cmd, gpus=n,
                    work_dir=work, nodes=n_nodes, gpus_per_node=per_node, total_batch=n * per_gpu,
                    recipe_batch=recipe_gpus * RECIPES[recipe][1], lr_scaled=lr_scaled)

    steps = []
    for method in methods:
        if method == 'random':  # the floor: both benchmarks from a randomly initialised backbone
            init = ['model.backbone.init_cfg=None']
        else:
            if method not in IN1K_CONFIGS:
                raise ValueError(f'no in1k recipe for {method!r}; choose from {", ".join(IN1K_CONFIGS)}')
            pre_work = osp.join(work_dir, method, 'pretrain')
            ckpt = osp.join(pre_work, f'epoch_{epochs}.pth')
            backbone = osp.join(work_dir, method, 'backbone.pth')
            steps.append(dict(train('pretrain', method, osp.join(work_dir, 'configs', f'{method}_in1k.py'), method,
                                    pre_work, []), epochs=epochs, recipe=IN1K_CONFIGS[method]))
            steps.append(dict(name=f'{method}/export', kind='export', method=method, gpus=0,
                              work_dir=osp.join(work_dir, method),
                              cmd=['python', 'tools/model_converters/extract_backbone.py', ckpt, backbone]))
            init = [f'model.backbone.init_cfg.checkpoint={backbone}']
        steps.append(train('coco', method, COCO_CONFIG, 'coco', osp.join(work_dir, method, 'coco'), init))
        steps.append(train('linear', method, LINEAR_CONFIG, 'linear', osp.join(work_dir, method, 'linear'), init))
    return steps


STEP_NAMES = {'pretrain': 'pretrain', 'export': 'export', 'coco': 'coco-mask-rcnn-1x', 'linear': 'in1k-linear'}


def write_plan(methods: List[str], work_dir: str, **kwargs) -> str:
    """Write the wrapper configs, ``plan.sh`` and ``plan.json`` under ``work_dir``; return the script's path.

    ``kwargs`` go to :func:`gpu_plan`. Paths in the commands are relative to the repository root when
    ``work_dir`` lies inside it.
    """
    work_dir = osp.abspath(work_dir)
    if not osp.relpath(work_dir, ROOT).startswith('..'):
        work_dir = osp.relpath(work_dir, ROOT)
    steps = gpu_plan(methods, work_dir, **kwargs)  # validates the arguments before anything is written
    os.makedirs(osp.join(ROOT, work_dir, 'configs'), exist_ok=True)
    for method in methods:
        if method in IN1K_CONFIGS:  # atomic, and untouched when unchanged: other nodes may be reading it
            path, text = osp.join(ROOT, work_dir, 'configs', f'{method}_in1k.py'), wrapper_config(
                method, kwargs.get('epochs', 200))
            if osp.isfile(path):
                with open(path) as f:
                    if f.read() == text:
                        continue
            with open(f'{path}.{os.getpid()}.tmp', 'w') as f:
                f.write(text)
            os.replace(f'{path}.{os.getpid()}.tmp', path)
    write_json_atomic(osp.join(ROOT, work_dir, 'plan.json'), steps)
    script = osp.join(ROOT, work_dir, 'plan.sh')
    multi_node = any(s.get('nodes', 1) > 1 for s in steps) and kwargs.get('launcher', 'dist') == 'dist'
    with open(script, 'w') as f:
        f.write('#!/usr/bin/env bash\n# ImageNet pretraining -> export -> COCO Mask R-CNN 1x and linear evaluation\n')
        if multi_node:
            f.write('# Multi-node: run this script on every node with NODE_RANK=0..NNODES-1 and MASTER_ADDR=<node 0>\n'
                    '# (work dir on a shared file system); steps on one node run on node 0 while the others wait.\n')
        f.write(f'set -euo pipefail\ncd {shlex.quote(ROOT)}\n')
        if multi_node:
            f.write(f'mkdir -p {shlex.quote(osp.join(work_dir, "sync"))}\n')
        for step in steps:
            line = shlex.join(step['cmd'])
            if multi_node and step.get('nodes', 1) <= 1:
                flag = shlex.quote(osp.join(work_dir, 'sync', step['name'].replace('/', '_') + '.done'))
                line = (f'if [ "${{NODE_RANK:-0}}" = 0 ]; then\n  {line}\n  touch {flag}\n'
                        f'else\n  until [ -e {flag} ]; do sleep 30; done\nfi')
            f.write(f'# {step["name"]}\n{line}\n')
    return script


def _stage_dir(work_dir: str, name: str, node_rank: int = 0) -> str:
    stages = osp.join(work_dir, 'stages') if node_rank == 0 else osp.join(work_dir, 'stages', f'node{node_rank}')
    return osp.join(stages, name.replace('/', '_'))


def _abs(work_dir: str) -> str:
    return work_dir if osp.isabs(work_dir) else osp.join(ROOT, work_dir)


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished child processes and theirs."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def launch_plan(work_dir: str, env: Optional[Dict[str, str]] = None, poll_s: float = 30.0) -> dict:
    """Run the steps of ``plan.json`` in order, each logged to its stage's ``log.txt`` with its wall time; a
    finished step (stage marker) is skipped. Returns :func:`collect_results` (written on node 0 only).

    A step's stage record holds its wall seconds and the CPU seconds of its processes on this node (``cpu_s``).
    ``env`` is added to the environment of the commands; ``NODE_RANK`` (there or in the environment) > 0 marks
    another node of a multi-node plan: it runs the steps that span nodes and, for each step of node 0 alone, waits
    for node 0's stage marker (every ``poll_s`` seconds; the work dir must be shared); it collects nothing.
    """
    work_dir = _abs(work_dir)
    with open(osp.join(work_dir, 'plan.json')) as f:
        steps = json.load(f)
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault('PYTHON', sys.executable)  # tools/*_train.sh run this interpreter
    node_rank = int(full_env.get('NODE_RANK', 0) or 0)
    for step in steps:
        if node_rank > 0 and step.get('nodes', 1) <= 1:  # node 0's step: wait for its marker (shared work dir)
            print(f'[plan] {step["name"]}: runs on node 0; waiting for it', flush=True)
            while load_done(_stage_dir(work_dir, step['name']), log=lambda _: None) is None:
                time.sleep(poll_s)
            continue
        cmd = [sys.executable if step['cmd'][0] == 'python' else step['cmd'][0]] + step['cmd'][1:]

        def work(stage_dir: str, step=step, cmd=cmd) -> Tuple[dict, List[str]]:
            start, cpu = time.time(), _children_cpu_s()
            with open(osp.join(stage_dir, 'log.txt'), 'w') as log:
                code = subprocess.run(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT).returncode
            if code:
                with open(osp.join(stage_dir, 'log.txt'), errors='replace') as log:
                    tail = log.read()[-3000:]
                raise RuntimeError(f'step {step["name"]} exited {code}; its log '
                                   f'({osp.join(stage_dir, "log.txt")}) ends with:\n{tail}')
            return dict(step=step['name'], wall_s=round(time.time() - start, 3), gpus=step['gpus'],
                        cpu_s=round(_children_cpu_s() - cpu, 3)), ['log.txt']
        print(f'[plan] {step["name"]}: {shlex.join(step["cmd"])}', flush=True)
        done = run_stage(_stage_dir(work_dir, step['name'], node_rank), work)
        print(f'[plan] {step["name"]}: ' + ('finished earlier, skipped' if done['reused']
                                           else f'{done["wall_s"]:.0f} s'), flush=True)
    if node_rank > 0:
        return dict(node_rank=node_rank)
    return collect_results(work_dir)


def _scalars(work: str) -> List[dict]:
    """The json lines that mmengine's LocalVisBackend wrote under ``work`` (``<timestamp>/vis_data/scalars.json``,
    or the LoggerHook's ``<timestamp>/vis_data/<timestamp>.json``), oldest run first."""
    records = []
    for run in sorted(glob.glob(osp.join(work, '*', 'vis_data'))):
        stamp = osp.basename(osp.dirname(run))
        path = osp.join(run, 'scalars.json')
        if not osp.isfile(path):
            path = osp.join(run, f'{stamp}.json')
        if not osp.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash
                if isinstance(record, dict):
                    records.append(record)
    return records


def _last(records: List[dict], key: str) -> Optional[float]:
    for record in reversed(records):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def collect_results(work_dir: str) -> dict:
    """Collect the plan's metrics into ``results.json`` and ``results.md`` under ``work_dir``.

    Per method: COCO box / mask AP (mmdet's ``coco/bbox_mAP``, ``coco/segm_mAP``, fractions in [0, 1], from the
    last validation of the COCO step's work dir) and linear top-1 (mmpretrain's ``accuracy/top1``, in %), and per
    step its wall time and GPU-hours (GPUs x wall / 3600) from its stage record. A metric or a step that is not
    there is None ("—" in the table), never estimated; so is COCOeval's -1 (undefined). Returns
    ``dict(rows, steps)``: rows ``method, box_ap, mask_ap, linear_top1, wall_s, gpu_hours, complete``; steps
    ``name, kind, method, gpus, nodes, total_batch, lr_scaled, done, wall_s, gpu_hours``.
    """
    work_dir = _abs(work_dir)
    with open(osp.join(work_dir, 'plan.json')) as f:
        steps = json.load(f)
    step_records, rows = [], {}
    for step in steps:
        done = load_done(_stage_dir(work_dir, step['name']), log=lambda _: None)
        wall = done.get('wall_s') if done else None
        record = dict(name=step['name'], kind=step['kind'], method=step['method'], gpus=step['gpus'],
                      nodes=step.get('nodes'), total_batch=step.get('total_batch'), lr_scaled=step.get('lr_scaled'),
                      done=done is not None, wall_s=wall,
                      gpu_hours=None if wall is None else step['gpus'] * wall / 3600)
        step_records.append(record)
        row = rows.setdefault(step['method'], dict(method=step['method'], box_ap=None, mask_ap=None,
                                                   linear_top1=None, wall_s=0.0, gpu_hours=0.0, complete=True))
        if wall is None:
            row['complete'] = False
        else:
            row['wall_s'] += wall
            row['gpu_hours'] += record['gpu_hours']
        if step['kind'] in METRICS:
            scalars = _scalars(_abs(step['work_dir']))
            if step['kind'] == 'coco':
                # COCOeval's -1 means undefined (no ground truth / no detections evaluated): missing
                row['box_ap'], row['mask_ap'] = (None if v is None or v < 0 else v
                                                 for v in (_last(scalars, k) for k in METRICS['coco']))
            else:
                row['linear_top1'] = _last(scalars, METRICS['linear'][0])
    results = dict(rows=list(rows.values()), steps=step_records)
    write_json_atomic(osp.join(work_dir, 'results.json'), results)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(results_table(results))
    return results


def results_table(results: dict) -> str:
    """Markdown: one row per method, then the wall time and GPU-hours of every step."""
    def num(value, fmt: str) -> str:
        return '—' if value is None else format(value, fmt)

    lines = ['# ImageNet pretraining -> COCO Mask R-CNN 1x and ImageNet linear evaluation', '',
             '| method | COCO box AP | COCO mask AP | IN-1k linear top-1 (%) | GPU-hours | complete |',
             '|---|---|---|---|---|---|']
    for r in results['rows']:
        lines.append(f'| {r["method"]} | {num(r["box_ap"] and 100 * r["box_ap"], ".1f")} | '
                     f'{num(r["mask_ap"] and 100 * r["mask_ap"], ".1f")} | {num(r["linear_top1"], ".2f")} | '
                     f'{r["gpu_hours"]:.2f} | {"yes" if r["complete"] else "no"} |')
    lines += ['', 'AP: mmdet\'s coco/bbox_mAP and coco/segm_mAP x 100 (last validation); top-1: mmpretrain\'s '
              'accuracy/top1 (last validation); — = not found in the step\'s work dir.', '',
              '| step | GPUs | nodes | total batch | lr rescaled | wall (min) | GPU-hours |',
              '|---|---|---|---|---|---|---|']
    for s in results['steps']:
        lines.append(f'| {s["name"]} | {s["gpus"]} | {num(s["nodes"], "d")} | {num(s["total_batch"], "d")} | '
                     f'{"—" if s["lr_scaled"] is None else ("yes" if s["lr_scaled"] else "no")} | '
                     f'{num(s["wall_s"] and s["wall_s"] / 60, ".1f")} | {num(s["gpu_hours"], ".3f")} |')
    return '\n'.join(lines) + '\n'
