"""Equal-budget pretraining of one method (a stage): derived config -> ``tools/train.py`` -> exported backbone.

Every method's shapes config is rewritten to the profile's backbone width and strides, view size, data, batch,
epochs and seed; only the lr (times the sweep multiplier) and the method's own recipe differ. The online
backbone is exported with ``tools/model_converters/extract_backbone.py``, the project's converter.
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Callable, List, Optional, Tuple

import torch
from mmengine.config import Config

from .profiles import METHODS, ROOT, Profile

TRAIN_PROGRESS = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')


def backbone_cfg(profile: Profile) -> dict:
    """The ResNet-18 every method trains and every probe evaluates."""
    return dict(type='ResNet', depth=18, base_channels=profile.base_channels, stem_channels=profile.base_channels,
                strides=tuple(profile.strides), out_indices=(3, ))


def iters_per_run(profile: Profile) -> int:
    return profile.epochs * (profile.train_images // profile.batch_size)


def _walk(node, fn: Callable[[dict], Optional[dict]]):
    """Apply ``fn`` to every dict with a ``type`` in a pipeline (nested lists/dicts); a returned dict replaces it."""
    if isinstance(node, list):
        return [_walk(n, fn) for n in node]
    if isinstance(node, dict):
        node = {k: _walk(v, fn) for k, v in node.items()}
        if 'type' in node:
            node = fn(node) or node
        return node
    return node


def pretrain_config(method: str, profile: Profile, lr_mult: float, seed: int, data_root: str,
                    mask_source: str = 'fh') -> Config:
    """The method's shapes config at the profile's budget (see the module doc)."""
    cfg = Config.fromfile(osp.join(ROOT, METHODS[method]))
    size, width = profile.image_size, profile.base_channels
    model = cfg.model
    model.backbone.update({k: v for k, v in backbone_cfg(profile).items() if k not in ('type', 'out_indices')})
    in_ch = model.neck.in_channels
    scale = lambda c: c * width // 64  # noqa: E731  (ResNet-18 stage widths are multiples of base_channels)
    model.neck.in_channels = [scale(c) for c in in_ch] if isinstance(in_ch, (list, tuple)) else scale(in_ch)

    def views(t: dict) -> Optional[dict]:
        kind = t['type']
        if kind in ('RandomResizedCrop', 'DetConRandomResizedCrop'):
            return dict(t, scale=size)
        if kind == 'DetCoLocalPatches':  # 3x3 cells of size//3; patches 3/4 of a cell, as 24 of 32 px
            cell = size // 3
            return dict(t, crop_size=3 * cell, cell_size=cell, patch_size=max(1, round(cell * 0.75)))
        if kind == 'LoadIdMap':
            if mask_source == 'grid':
                return dict(type='GridMask', grid_size=profile.grid_size)
            if mask_source == 'gt':
                return dict(type='LoadIdMap')  # the dataset's instance maps
            area = (size / 128) ** 2  # FH scale and min size are areas (config tuned at 128 px)
            fh = dict(t.get('fallback_cfg', {}))
            fh.update(scale=max(1, round(fh.get('scale', 87) * area)),
                      min_size=max(1, round(fh.get('min_size', 87) * area)))
            return dict(t, fallback_cfg=fh)
        return None

    loader = cfg.train_dataloader
    loader.update(batch_size=profile.batch_size, num_workers=0, persistent_workers=False, drop_last=True)
    loader.dataset.update(data_root=data_root, split='train', num_images=profile.train_images, image_size=size,
                          **profile.scene(), pipeline=_walk(list(loader.dataset.pipeline), views))
    if method.startswith('detcon'):
        loader.dataset.with_masks = 'instance' if mask_source == 'gt' else (
            None if mask_source == 'grid' else 'masks_fh')
    elif mask_source != 'fh':
        raise ValueError(f'mask sources apply to DetCon only, not {method}')

    for stale in ('crop_size', 'fh_cfg', 'view_pipeline', 'view_pipeline1', 'view_pipeline2', 'photometric',
                  'global_view', 'local_set', 'train_pipeline'):
        cfg.pop(stale, None)  # the base's pipeline variables, already expanded into the dataset (old sizes)
    cfg.optim_wrapper.optimizer.lr = cfg.optim_wrapper.optimizer.lr * lr_mult
    epochs, old = profile.epochs, cfg.train_cfg.max_epochs
    schedulers = []
    for s in cfg.param_scheduler:
        if s.get('begin', 0) >= epochs:
            continue  # e.g. the cosine phase after a 1-epoch warm-up in a 1-epoch run
        s = dict(s, end=epochs if s.get('end') == old else min(s['end'], epochs))
        if 'T_max' in s:
            s['T_max'] = s['end'] - s.get('begin', 0)
        schedulers.append(s)
    cfg.param_scheduler = schedulers
    cfg.train_cfg.max_epochs = epochs
    cfg.custom_hooks = []  # no visualisation during benchmark pretraining
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs, max_keep_ckpts=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, min(10, iters_per_run(profile) // 4)))
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    return cfg


def child_env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    return env


def run_logged(cmd: List[str], log_path: str, progress: Callable[[int], None] = lambda n: None,
               threads: int = 1) -> Tuple[float, float]:
    """Run ``cmd`` with output in ``log_path``; report ``Epoch(train)`` progress; return (wall s, CPU s)."""
    start = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(threads), stdout=log, stderr=subprocess.STDOUT)
        last = 0
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                done = pid == proc.pid
                with open(log_path, errors='replace') as f:
                    found = TRAIN_PROGRESS.findall(f.read())
                if found:
                    epoch, it, per_epoch = map(int, found[-1])
                    now = (epoch - 1) * per_epoch + it
                    if now > last:
                        progress(now - last)
                        last = now
                if done:
                    break
                time.sleep(1.0)
        except BaseException:  # interrupted: do not leave the training running
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log_path, errors='replace') as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f'{" ".join(cmd[1:3])} failed (exit {proc.returncode}); log {log_path}:\n{tail}')
    return time.time() - start, usage.ru_utime + usage.ru_stime


def train_in_stage(stage_dir: str, cfg: Config, progress: Callable[[int], None]) -> Tuple[float, float, str]:
    """Write ``cfg`` as the stage's ``config.py`` and train it with ``tools/train.py``; (wall s, CPU s, work dir)."""
    cfg_path, work = osp.join(stage_dir, 'config.py'), osp.join(stage_dir, 'work')
    cfg.dump(cfg_path)
    wall, cpu = run_logged([sys.executable, osp.join(ROOT, 'tools/train.py'), cfg_path, '--work-dir', work],
                           osp.join(stage_dir, 'train.log'), progress)
    return wall, cpu, work


def drop_checkpoints(work: str) -> None:
    """Full checkpoints are not kept once their result is extracted."""
    for path in glob.glob(osp.join(work, '*.pth')):
        os.remove(path)


def export_backbone(checkpoint: str, out: str) -> None:
    """The project's converter, as a user runs it."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    cmd = [sys.executable, osp.join(ROOT, 'tools/model_converters/extract_backbone.py'), checkpoint, out]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'extract_backbone.py {checkpoint} failed: {proc.stderr.strip()[-2000:]}')


def pretrain(stage_dir: str, method: str, profile: Profile, lr_mult: float, seed: int, data_root: str,
             mask_source: str = 'fh', progress: Callable[[int], None] = lambda n: None) -> Tuple[dict, List[str]]:
    """Stage body: train, export ``backbone.pth``, drop the full checkpoint; returns (record, files)."""
    cfg = pretrain_config(method, profile, lr_mult, seed, data_root, mask_source)
    wall, cpu, work = train_in_stage(stage_dir, cfg, progress)
    export_backbone(osp.join(work, f'epoch_{profile.epochs}.pth'), osp.join(stage_dir, 'backbone.pth'))
    drop_checkpoints(work)
    images = iters_per_run(profile) * profile.batch_size
    record = dict(method=method, seed=seed, lr_mult=lr_mult, lr=cfg.optim_wrapper.optimizer.lr,
                  mask_source=mask_source if method.startswith('detcon') else None, images_seen=images,
                  wall_s=round(wall, 1), cpu_s=round(cpu, 1), images_per_s=round(images / wall, 2))
    return record, ['config.py', 'backbone.pth']


def random_backbone(stage_dir: str, profile: Profile, seed: int) -> Tuple[dict, List[str]]:
    """Stage body of the floor: the backbone at its initialisation (mmpretrain's ResNet init)."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    net = MODELS.build(backbone_cfg(profile))
    net.init_weights()
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, osp.join(stage_dir, 'backbone.pth'))
    record = dict(method='random', seed=seed, lr_mult=None, lr=None, mask_source=None, images_seen=0,
                  wall_s=0.0, cpu_s=0.0, images_per_s=None)
    return record, ['backbone.pth']
