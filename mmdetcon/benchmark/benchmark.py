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
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from . import report
from .detection import fine_tune
from .features import effective_rank, extract, load_backbone, load_labels
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
        if not all(torch.isfinite(f).all() for f in feats.values()):  # a diverged pretraining: no probe scores
            metrics = dict(diverged=True)
        else:
            metrics = dict(run_probes(feats, self.labels, p.weight_decays, p.probe_iters),
                           feature_rank=round(effective_rank(feats['train']), 3))
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

    def execute_all(self, runs: List[Run], desc: str,
                    then: Callable[[Run, List[dict]], List[Run]] = lambda run, records: []) -> List[dict]:
        """Execute ``runs`` ``jobs`` at a time; ``then(run, records so far)`` may add runs once ``run`` is done.

        Records are returned in completion order.
        """
        records: List[dict] = []
        self._bar = tqdm(total=0, desc=desc, unit='it')
        pool = ThreadPoolExecutor(max(1, self.jobs))
        pending: Dict[Future, Run] = {}

        def submit(run: Run) -> None:
            if run.method != 'random' and not run.checkpoint:
                with self._lock:
                    self._bar.total += iters_per_run(self.profile)
                    self._bar.refresh()
            pending[pool.submit(self.execute, run)] = run

        try:
            for run in runs:
                submit(run)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    run = pending.pop(fut)
                    records.append(fut.result())
                    for more in then(run, records):
                        submit(more)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._bar.close()
            self._bar = None
        return records


def next_lr_mults(scores: Dict[float, float], bounds: Sequence[float], step: float = 4.0) -> List[float]:
    """Where a sweep goes next: one ``step`` beyond each end of the swept multipliers that holds the best score
    (ties: the lower lr), within ``bounds``; [] once the best has a swept lr on each side (or a bound is hit)."""
    if not scores:
        return []
    mults = sorted(scores)
    best = report.best_mult(scores)
    out = []
    if best == mults[0] and best / step >= bounds[0] * (1 - 1e-9):
        out.append(best / step)
    if best == mults[-1] and best * step <= bounds[1] * (1 + 1e-9):
        out.append(best * step)
    return out


def select_lr(records: List[dict]) -> Dict[str, float]:
    """Per method, the seed-0 swept lr multiplier with the best held-out selection score (the lower lr on ties)."""
    return {m: report.best_mult(points) for m, points in report.sweep_points(records).items()}


def run_benchmark(profile: Profile, work_dir: str, seeds: int = 1, jobs: int = 1, detection_epochs: int = 0,
                  command: str = '', log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the benchmark and write its outputs into ``work_dir``; returns the results dict.

    A method's further seeds (and DetCon-B's mask ablation) start as soon as its own sweep is bracketed.
    ``results.json`` records ``wall_min``: this invocation's wall time (reused stages cost nothing).
    """
    start = time.time()
    unknown = [m for m in profile.methods if m not in METHODS]
    if unknown:
        raise ValueError(f'unknown method {unknown[0]!r}; choose from {", ".join(METHODS)}')
    bench = Benchmark(profile, work_dir, jobs, detection_epochs, log)
    pretrained = [m for m in profile.methods if m != 'random']
    first = [Run(m, 0, mult) for m in pretrained for mult in sorted(set(profile.lr_multipliers))]
    floor = [Run('random', s, role='main') for s in range(seeds)] if 'random' in profile.methods else []
    extra = [Run(name, 0, role='main', checkpoint=path) for name, path in profile.extra.items()]
    chosen: Dict[str, float] = {}
    queued = {(r.method, r.lr_mult) for r in first}

    def then(run: Run, records: List[dict]) -> List[Run]:
        """After a sweep run: extend the method's sweep, or start its further seeds once it is bracketed."""
        m = run.method
        scores = report.sweep_points(records).get(m, {})
        if run.role != 'sweep' or len(scores) < sum(1 for key in queued if key[0] == m):
            return []  # not a sweep run, or the method's sweep is still running
        more = [x for x in next_lr_mults(scores, profile.lr_bounds) if (m, x) not in queued]
        if more:
            log(f'{m}: best val score at an end of the sweep (lr x{report.best_mult(scores):g}); '
                f'adding lr x{", x".join(f"{x:g}" for x in more)}')
            queued.update((m, x) for x in more)
            return [Run(m, 0, x) for x in more]
        chosen[m] = select_lr(records)[m]
        later = [Run(m, s, chosen[m], role='main') for s in range(1, seeds)]
        if m == 'detcon-b':
            later += [Run(m, s, chosen[m], src, 'ablation') for src in profile.ablation for s in range(seeds)]
        return later

    records = bench.execute_all(first + floor + extra, 'pretraining (lr sweeps, seeds, mask ablation)', then)
    for r in records:
        if r['role'] == 'sweep' and chosen.get(r['method']) == r['lr_mult']:
            r['role'] = 'main'
    if detection_epochs:  # the reported rows also get their fine-tune
        records = [bench.execute(Run(r['method'], r['seed'], r['lr_mult'], r['mask_source'] or 'fh', 'main'))
                   if r['role'] == 'main' and 'bbox_mAP' not in r['metrics'] and not r.get('checkpoint') else r
                   for r in records]
    return write_outputs(records, profile, work_dir, command, chosen, chance_levels(bench.labels['test']),
                         sweep_summary(records, profile.lr_bounds, pretrained), (time.time() - start) / 60)


def sweep_summary(records: List[dict], bounds: Sequence[float], methods: Sequence[str]) -> Dict[str, dict]:
    """Per method, its swept multipliers with their val selection scores (None: diverged), the selected one,
    whether it is strictly inside the sweep and whether the sweep stopped at ``bounds``."""
    out = {}
    sweeps = report.sweep_points(records)
    for method, points in [(m, sweeps[m]) for m in methods if m in sweeps]:
        best = report.best_mult(points)
        out[method] = dict(val_score={f'{k:g}': None if points[k] == float('-inf') else round(points[k], 3)
                                      for k in sorted(points)},
                           selected=best, inside=min(points) < best < max(points),
                           at_bound=best <= bounds[0] * (1 + 1e-9) or best >= bounds[1] * (1 - 1e-9))
    return out


def write_outputs(records: List[dict], profile: Profile, work_dir: str, command: str,
                  chosen: Dict[str, float], chance: Dict[str, float], sweeps: Optional[dict] = None,
                  wall_min: Optional[float] = None) -> dict:
    methods = list(profile.methods) + [m for m in profile.extra]
    results = dict(profile=profile.to_dict(), command=command,
                   wall_min=None if wall_min is None else round(wall_min, 1), selected_lr_mult=chosen,
                   sweeps=sweeps or {}, chance=chance, summary=report.summary(records, methods),
                   paired=report.paired(records, methods), runs=records)
    write_json_atomic(osp.join(work_dir, 'results.json'), results)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(report.markdown(records, methods, profile.to_dict(), command, chance, results['wall_min']))
    results['plots'] = report.plots(records, methods, work_dir, chance)
    return results
