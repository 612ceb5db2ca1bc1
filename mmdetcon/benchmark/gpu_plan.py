"""The real-scale protocol (``--profile in1k-coco``) as a command plan: per method, ImageNet pretraining with its
in1k config -> ``extract_backbone.py`` -> COCO Mask R-CNN 1x and ImageNet linear evaluation, launched through
``tools/dist_train.sh`` or ``tools/slurm_train.sh``. Each step is a stage, so ``--launch`` resumes a plan.
"""
import os
import os.path as osp
import shlex
import subprocess
from typing import Dict, List, Optional

from .profiles import ROOT
from .stages import run_stage, write_json_atomic

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
# GPUs the recipes were written for (the config names' NxbB).
RECIPE_GPUS = dict(pretrain={'detco': 8, 'mocov2': 8, 'densecl': 8}, coco=8, linear=8)


def _epochs_of(config: str) -> int:
    name = osp.basename(config)
    return int(name.split('-coslr-')[1].split('e_')[0])


def _launch(launcher: str, config: str, work: str, gpus: int, partition: Optional[str], job: str,
            options: List[str]) -> List[str]:
    if launcher == 'slurm':
        if not partition:
            raise ValueError('--launcher slurm needs --partition')
        return ['env', f'GPUS={gpus}', f'GPUS_PER_NODE={min(gpus, 8)}', 'bash', 'tools/slurm_train.sh', partition,
                job, config, work] + options
    return ['bash', 'tools/dist_train.sh', config, str(min(gpus, 8)), '--work-dir', work] + options


def gpu_plan(methods: List[str], work_dir: str, launcher: str = 'dist', partition: Optional[str] = None,
             gpus: Optional[int] = None) -> List[dict]:
    """Steps ``{name, cmd}`` (commands run from the repository root), in order, for every method."""
    steps = []
    for method in methods:
        if method == 'random':  # the floor: both benchmarks from a randomly initialised backbone
            init = ['model.backbone.init_cfg=None']
        else:
            config = IN1K_CONFIGS[method]
            if config.startswith('mmpretrain::'):
                config = osp.join(work_dir, 'configs', f'{method}_in1k.py')
            pre_work = osp.join(work_dir, method, 'pretrain')
            ckpt = osp.join(pre_work, f'epoch_{_epochs_of(IN1K_CONFIGS[method])}.pth')
            backbone = osp.join(work_dir, method, 'backbone.pth')
            n = gpus or RECIPE_GPUS['pretrain'].get(method, 16)
            steps.append(dict(name=f'{method}/pretrain',
                              cmd=_launch(launcher, config, pre_work, n, partition, f'{method}-pre', [])))
            steps.append(dict(name=f'{method}/export',
                              cmd=['python', 'tools/model_converters/extract_backbone.py', ckpt, backbone]))
            init = [f'model.backbone.init_cfg.checkpoint={backbone}']
        steps.append(dict(name=f'{method}/coco-mask-rcnn-1x', cmd=_launch(
            launcher, COCO_CONFIG, osp.join(work_dir, method, 'coco'), gpus or RECIPE_GPUS['coco'], partition,
            f'{method}-coco', ['--cfg-options'] + init)))
        steps.append(dict(name=f'{method}/in1k-linear', cmd=_launch(
            launcher, LINEAR_CONFIG, osp.join(work_dir, method, 'linear'), gpus or RECIPE_GPUS['linear'],
            partition, f'{method}-lin', ['--cfg-options'] + init)))
    return steps


def write_plan(methods: List[str], work_dir: str, **kwargs) -> str:
    """Write the wrapper configs, ``plan.sh`` and ``plan.json`` under ``work_dir``; return the script's path.

    Paths in the commands are relative to the repository root when ``work_dir`` lies inside it.
    """
    work_dir = osp.abspath(work_dir)
    if not osp.relpath(work_dir, ROOT).startswith('..'):
        work_dir = osp.relpath(work_dir, ROOT)
    os.makedirs(osp.join(ROOT, work_dir), exist_ok=True)
    os.makedirs(osp.join(ROOT, work_dir, 'configs'), exist_ok=True)
    for method, config in IN1K_CONFIGS.items():
        if config.startswith('mmpretrain::') and method in methods:
            with open(osp.join(ROOT, work_dir, 'configs', f'{method}_in1k.py'), 'w') as f:
                f.write(f"_base_ = '{config}'\n"
                        "custom_imports = dict(imports=['mmdetcon'], allow_failed_imports=False)\n"
                        "runner_type = 'MMDetConRunner'\n")
    steps = gpu_plan(methods, work_dir, **kwargs)
    write_json_atomic(osp.join(ROOT, work_dir, 'plan.json'), steps)
    script = osp.join(ROOT, work_dir, 'plan.sh')
    with open(script, 'w') as f:
        f.write('#!/usr/bin/env bash\n# ImageNet pretraining -> export -> COCO Mask R-CNN 1x and linear evaluation\n'
                f'set -euo pipefail\ncd {shlex.quote(ROOT)}\n')
        for step in steps:
            f.write(f'# {step["name"]}\n{shlex.join(step["cmd"])}\n')
    return script


def launch_plan(work_dir: str) -> None:
    """Run the steps of ``plan.json`` in order; a finished step (stage marker) is skipped."""
    import json
    work_dir = osp.join(ROOT, work_dir)
    with open(osp.join(work_dir, 'plan.json')) as f:
        steps = json.load(f)
    for step in steps:
        def work(stage_dir: str, step=step):
            with open(osp.join(stage_dir, 'log.txt'), 'w') as log:
                subprocess.run(step['cmd'], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
            return dict(step=step['name']), ['log.txt']
        print(f'[plan] {step["name"]}: {shlex.join(step["cmd"])}', flush=True)
        run_stage(osp.join(work_dir, 'stages', step['name'].replace('/', '_')), work)
