"""One benchmark: data -> lr sweep (seed 0, scored on val) -> selected lr for further seeds and the DetCon-B
mask-source ablation -> optional detection fine-tune -> results.json / results.md / plots.

Every run is a stage under ``{work_dir}/runs/{name}`` with its evaluation (cached features and probe scores) in
``eval/`` inside it, so a redone pretraining always redoes its evaluation; finished stages are reused.
"""
import hashlib
import json
import os
import os.path as osp
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from tqdm import tqdm

from . import report
from .detection import fine_tune
from .features import extract, load_backbone, load_labels
from .pretrain import export_backbone, iters_per_run, pretrain, random_backbone
from .probes import chance_levels, run_probes
from .profiles import METHODS, Profile
from .stages import run_stage, write_json_atomic

SPLITS = ('train', 'val', 'test')
# Profile fields that may differ between invocations sharing a work dir (they add or drop runs, not change them).
SELECTORS = ('methods', 'extra', 'name', 'ablation')


@dataclass(frozen=True)
class Run:
    method: str
    seed: int
    lr_mult: Optional[float] = None
    mask_source: str = 'fh'
    role: str = 'sweep'  # sweep | main | ablation
    checkpoint: Optional[str] = None  # a user's pretraining checkpoint (an extra row)

    @property
    def name(self) -> str:
        if self.checkpoint:  # another file (or a rewritten one) under the same name is another stage
            st = os.stat(self.checkpoint)
            key = f'{osp.abspath(self.checkpoint)}:{st.st_size}:{st.st_mtime_ns}'
            return f'{self.method}_{hashlib.sha1(key.encode()).hexdigest()[:8]}_s{self.seed}'
        name = self.method if self.lr_mult is None else f'{self.method}_lr{self.lr_mult:g}'
        name += f'_{self.mask_source}' if self.mask_source != 'fh' else ''
        return f'{name}_s{self.seed}'


def check_profile(work_dir: str, profile: Profile) -> None:
    """Refuse a work dir whose runs were made with other settings (their rows would not be comparable)."""
    path = osp.join(work_dir, 'profile.json')
    mine = {k: v for k, v in json.loads(json.dumps(profile.to_dict())).items() if k not in SELECTORS}
    if osp.isfile(path):
        with open(path) as f:
            theirs = {k: v for k, v in json.load(f).items() if k not in SELECTORS}
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise ValueError(f'{work_dir} holds a benchmark made with other settings ({", ".join(diff)} differ); '
                             'use another --work-dir')
    else:
        write_json_atomic(path, profile.to_dict())


def prepare_data(work_dir: str, profile: Profile) -> str:
    from mmdetcon.datasets.shapes import make_shapes
    root = osp.join(work_dir, 'data')
    sizes = dict(train=max(profile.train_images, profile.probe_images), val=profile.val_images,
                 test=profile.test_images)
    for split, num in sizes.items():
        make_shapes(root, num, profile.image_size, split=split, **profile.scene())
    return root


class Benchmark:
    """Runs stages (``jobs`` at a time) and collects their records."""

    def __init__(self, profile: Profile, work_dir: str, jobs: int = 1, detection_epochs: int = 0,
                 log: Callable[[str], None] = print) -> None:
        self.profile, self.work_dir, self.jobs, self.log = profile, work_dir, jobs, log
        self.detection_epochs = detection_epochs
        os.makedirs(work_dir, exist_ok=True)
        check_profile(work_dir, profile)
        self.data_root = prepare_data(work_dir, profile)
        p = profile
        self.labels = {s: load_labels(self.data_root, s, n) for s, n in
                       zip(SPLITS, (p.probe_images, p.val_images, p.test_images))}
        self._lock = threading.Lock()
        self._bar: Optional[tqdm] = None

    def _advance(self, n: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(n)

    def _evaluate(self, stage_dir: str, backbone: str):
        net = load_backbone(backbone, self.profile)
        p = self.profile
        feats = {s: extract(net, self.data_root, s, n, desc=f'{osp.basename(osp.dirname(stage_dir))} {s}')
                 for s, n in zip(SPLITS, (p.probe_images, p.val_images, p.test_images))}
        torch.save(feats, osp.join(stage_dir, 'features.pt'))
        metrics = run_probes(feats, self.labels, p.weight_decays, p.probe_iters)
        write_json_atomic(osp.join(stage_dir, 'metrics.json'), metrics)
        return dict(metrics=metrics), ['features.pt', 'metrics.json']

    def _external(self, stage_dir: str, run: Run):
        if not osp.isfile(run.checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {run.checkpoint}')
        export_backbone(run.checkpoint, osp.join(stage_dir, 'backbone.pth'))
        return dict(method=run.method, seed=run.seed, lr_mult=None, lr=None, mask_source=None, images_seen=None,
                    wall_s=None, cpu_s=None, images_per_s=None, checkpoint=run.checkpoint), ['backbone.pth']

    def execute(self, run: Run) -> dict:
        p, stage = self.profile, osp.join(self.work_dir, 'runs', run.name)
        if run.checkpoint:
            rec = run_stage(stage, lambda d: self._external(d, run), self.log)
        elif run.method == 'random':
            rec = run_stage(stage, lambda d: random_backbone(d, p, run.seed), self.log)
        else:
            rec = run_stage(stage, lambda d: pretrain(d, run.method, p, run.lr_mult, run.seed, self.data_root,
                                                       run.mask_source, self._advance), self.log)
            if rec['reused']:
                self._advance(iters_per_run(p))
        backbone = osp.join(stage, 'backbone.pth')
        ev = run_stage(osp.join(stage, 'eval'), lambda d: self._evaluate(d, backbone), self.log)
        out = dict(rec, name=run.name, role=run.role, metrics=dict(ev['metrics']))
        if self.detection_epochs and run.role == 'main':
            det = run_stage(osp.join(stage, f'detection_{self.detection_epochs}e'), lambda d: fine_tune(
                d, p, backbone, self.data_root, self.detection_epochs, run.seed), self.log)
            out['metrics'].update(bbox_mAP=det['bbox_mAP'], segm_mAP=det['segm_mAP'])
            out['detection'] = {k: det[k] for k in ('det_epochs', 'det_wall_s', 'det_cpu_s')}
        return out

    def execute_all(self, runs: List[Run], desc: str) -> List[dict]:
        trained = sum(iters_per_run(self.profile) for r in runs if r.method != 'random' and not r.checkpoint)
        self._bar = tqdm(total=trained, desc=desc, unit='it', disable=not trained)
        try:
            with ThreadPoolExecutor(max(1, self.jobs)) as pool:
                return list(pool.map(self.execute, runs))
        finally:
            self._bar.close()
            self._bar = None


def select_lr(records: List[dict]) -> Dict[str, float]:
    """Per method, the sweep's lr multiplier with the best held-out selection score (the first on ties)."""
    best: Dict[str, tuple] = {}
    for r in records:
        if r['lr_mult'] is None:
            continue
        score = report.selection_score(r)
        if r['method'] not in best or score > best[r['method']][1]:
            best[r['method']] = (r['lr_mult'], score)
    return {m: v[0] for m, v in best.items()}


def run_benchmark(profile: Profile, work_dir: str, seeds: int = 1, jobs: int = 1, detection_epochs: int = 0,
                  command: str = '', log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the benchmark and write its outputs into ``work_dir``; returns the results dict."""
    unknown = [m for m in profile.methods if m not in METHODS]
    if unknown:
        raise ValueError(f'unknown method {unknown[0]!r}; choose from {", ".join(METHODS)}')
    bench = Benchmark(profile, work_dir, jobs, detection_epochs, log)
    pretrained = [m for m in profile.methods if m != 'random']
    first = [Run(m, 0, mult) for m in pretrained for mult in profile.lr_multipliers]
    floor = [Run('random', s, role='main') for s in range(seeds)] if 'random' in profile.methods else []
    extra = [Run(name, 0, role='main', checkpoint=path) for name, path in profile.extra.items()]
    records = bench.execute_all(first + floor + extra, 'pretraining (lr sweep, seed 0)')

    chosen = select_lr([r for r in records if r['role'] == 'sweep'])
    for r in records:
        if r['role'] == 'sweep' and chosen.get(r['method']) == r['lr_mult']:
            r['role'] = 'main'
    later = [Run(m, s, chosen[m], role='main') for m in pretrained for s in range(1, seeds)]
    if 'detcon-b' in chosen:
        later += [Run('detcon-b', s, chosen['detcon-b'], src, 'ablation')
                  for src in profile.ablation for s in range(seeds)]
    if later:
        records += bench.execute_all(later, 'pretraining (seeds, mask ablation)')
    if detection_epochs:  # the sweep's selected rows also get their fine-tune
        records = [bench.execute(Run(r['method'], r['seed'], r['lr_mult'], r['mask_source'] or 'fh', 'main'))
                   if r['role'] == 'main' and 'bbox_mAP' not in r['metrics'] and not r.get('checkpoint') else r
                   for r in records]
    return write_outputs(records, profile, work_dir, command, chosen, chance_levels(bench.labels['test']))


def write_outputs(records: List[dict], profile: Profile, work_dir: str, command: str,
                  chosen: Dict[str, float], chance: Dict[str, float]) -> dict:
    methods = list(profile.methods) + [m for m in profile.extra]
    results = dict(profile=profile.to_dict(), command=command, selected_lr_mult=chosen, chance=chance,
                   summary=report.summary(records, methods), runs=records)
    write_json_atomic(osp.join(work_dir, 'results.json'), results)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(report.markdown(records, methods, profile.to_dict(), command, chance))
    results['plots'] = report.plots(records, methods, work_dir, chance)
    return results
