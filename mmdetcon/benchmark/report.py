"""The benchmark's outputs: ``results.json`` (every run), ``results.md`` (tables) and PNG plots."""
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .profiles import MASK_SOURCES, PAIRS

METRICS: Dict[str, str] = dict(dense_miou='dense mIoU', object_top1='object top-1', multilabel_map='multi-label mAP',
                               bbox_mAP='box AP', segm_mAP='mask AP')


def selection_score(run: dict) -> float:
    """The held-out (``val``) score an lr is chosen by: the mean of the probes' val scores (-inf for a run
    whose features are not finite)."""
    probes = [v['val'] for v in run['metrics'].values() if isinstance(v, dict) and 'val' in v]
    return float(np.mean(probes)) if probes else float('-inf')


def test_value(run: dict, metric: str):
    v = run['metrics'].get(metric)
    return v['test'] if isinstance(v, dict) else v


def _mean_std(values: Sequence[Optional[float]]) -> Tuple[float, float]:
    """Over the values that are there (a diverged run has none)."""
    a = np.asarray([v for v in values if v is not None], float)
    if not len(a):
        return float('nan'), 0.0
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _stats(values: Sequence[Optional[float]]) -> dict:
    """mean, std and n of the values that are there."""
    return dict(zip(('mean', 'std'), _mean_std(values)), n=sum(v is not None for v in values))


def _fmt(values: Sequence[Optional[float]]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    m, s = _mean_std(values)
    return f'{m:.1f} ± {s:.1f}' if len(values) > 1 else f'{m:.1f}'


def paired_difference(a: Dict[int, float], b: Dict[int, float]) -> Optional[dict]:
    """Mean over the seeds both have of ``a[seed] - b[seed]``, with its two-sided 95 % Student-t interval
    (mean ± t(0.975, n-1) · sd / sqrt(n)); no interval below 2 pairs."""
    from scipy import stats
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))], float)
    if not len(d):
        return None
    out = dict(mean=float(d.mean()), lo=None, hi=None, n=len(d))
    if len(d) > 1:
        half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
        out.update(lo=out['mean'] - half, hi=out['mean'] + half)
    return out


def comparisons(methods: Sequence[str]) -> List[Tuple[str, str]]:
    """The paired comparisons reported: each object-level method against its baseline, each method against
    random init."""
    out = [(a, b) for a, b in PAIRS if a in methods and b in methods]
    return out + [(m, 'random') for m in methods if m != 'random' and 'random' in methods]


def paired(runs: List[dict], methods: Sequence[str]) -> Dict[str, dict]:
    """Per comparison ``'a − b'`` and test metric, :func:`paired_difference` over seeds of the main rows."""
    rows = main_rows(runs, methods)
    out = {}
    for a, b in comparisons(list(rows)):
        by_seed = {m: {c: {r['seed']: test_value(r, c) for r in rows[m] if test_value(r, c) is not None}
                       for c in metrics_of(rows[a] + rows[b])} for m in (a, b)}
        out[f'{a} − {b}'] = {c: paired_difference(by_seed[a][c], by_seed[b][c]) for c in by_seed[a]}
    return out


def _fmt_diff(d: Optional[dict]) -> str:
    if d is None:
        return '–'
    if d['lo'] is None:
        return f'{d["mean"]:+.1f}'
    return f'{d["mean"]:+.1f} [{d["lo"]:+.1f}, {d["hi"]:+.1f}]'


def metrics_of(runs: List[dict]) -> List[str]:
    return [m for m in METRICS if any(test_value(r, m) is not None for r in runs)]


def main_rows(runs: List[dict], methods: Sequence[str]) -> Dict[str, List[dict]]:
    """Per method, its reported runs (selected lr, FH masks for DetCon), one per seed."""
    rows = defaultdict(list)
    for r in runs:
        if r['role'] == 'main':
            rows[r['method']].append(r)
    return {m: sorted(rows[m], key=lambda r: r['seed']) for m in methods if rows.get(m)}


def ablation_rows(runs: List[dict]) -> Dict[str, List[dict]]:
    """DetCon-B runs at its selected lr per mask source (FH = its main rows)."""
    rows = {src: [r for r in runs if r['method'] == 'detcon-b' and r['mask_source'] == src
                  and r['role'] in ('main', 'ablation')] for src in MASK_SOURCES}
    return {k: v for k, v in rows.items() if v}


def summary(runs: List[dict], methods: Sequence[str]) -> dict:
    """Mean, std and n of every test metric and of the compute, per method (and per mask source)."""
    out = {}
    for method, rs in main_rows(runs, methods).items():
        out[method] = {m: _stats([test_value(r, m) for r in rs]) for m in metrics_of(rs)}
        ranks = [r['metrics'].get('feature_rank') for r in rs]
        if any(v is not None for v in ranks):
            out[method]['feature_rank'] = _stats(ranks)
        out[method]['lr'] = rs[0]['lr']
        for k in ('wall_s', 'cpu_s', 'images_per_s'):
            vals = [r[k] for r in rs if r[k] is not None]
            out[method][k] = float(np.mean(vals)) if vals else None
    for src, rs in ablation_rows(runs).items():
        out[f'detcon-b[{src}]'] = {m: _stats([test_value(r, m) for r in rs]) for m in metrics_of(rs)}
    return out


def markdown(runs: List[dict], methods: Sequence[str], profile: dict, command: str,
             chance: Optional[Dict[str, float]] = None, wall_min: Optional[float] = None) -> str:
    """results.md: main table, DetCo/DetCon against their baselines, mask ablation, lr sweep."""
    rows = main_rows(runs, methods)
    cols = metrics_of([r for rs in rows.values() for r in rs])
    lines = [f'# Benchmark results (profile `{profile["name"]}`)', '',
             f'Command: `{command}`' + (f' ({wall_min:.1f} min wall)' if wall_min else ''), '',
             f'Test split, mean ± std over seeds (n per row). ResNet-18 width {profile["base_channels"]}, '
             f'strides {tuple(profile["strides"])}, {profile["image_size"]} px views, batch {profile["batch_size"]}, '
             f'{profile["epochs"]} epochs of {profile["train_images"]} images; lr chosen per method on the '
             'held-out val split (mean of the probes\' val scores). Feature rank: effective rank of the globally '
             'pooled probe-train features (1 = all on one line).', '',
             '| Method | n | ' + ' | '.join(METRICS[c] for c in cols)
             + ' | feature rank | lr | images/s | wall min | CPU min |',
             '|---|---|' + '---|' * (len(cols) + 5)]
    for method, rs in rows.items():
        ips = [r['images_per_s'] for r in rs if r['images_per_s']]
        compute = (f'{np.mean(ips):.1f} | {np.mean([r["wall_s"] for r in rs]) / 60:.1f} | '
                   f'{np.mean([r["cpu_s"] for r in rs]) / 60:.1f}') if ips else '– | – | –'
        lr = f'{rs[0]["lr"]:.4g}' if rs[0]['lr'] is not None else '–'
        rank = _fmt([r['metrics'].get('feature_rank') for r in rs])
        lines.append(f'| {method} | {len(rs)} | ' + ' | '.join(_fmt([test_value(r, c) for r in rs]) for c in cols)
                     + f' | {rank} | {lr} | {compute} |')
    if chance:
        lines.append('| *chance* | | ' + ' | '.join(f'*{chance[c]:.1f}*' if c in chance else '' for c in cols)
                     + ' | | | | | |')
    diverged = [r['name'] for r in runs if r['metrics'].get('diverged')]
    if diverged:
        lines += ['', f'Diverged (non-finite features, no probe scores; never selected): {", ".join(diverged)}.']
    diffs = paired(runs, methods)
    if diffs:
        lines += ['', '## Paired differences (test): mean over seeds [95 % t-interval]', '',
                  'Seed s of one method minus seed s of the other; n pairs per row.', '',
                  '| Comparison | n | ' + ' | '.join(METRICS[c] for c in cols) + ' |',
                  '|---|---|' + '---|' * len(cols)]
        for name, d in diffs.items():
            n = max((v['n'] for v in d.values() if v), default=0)
            lines.append(f'| {name} | {n} | ' + ' | '.join(_fmt_diff(d.get(c)) for c in cols) + ' |')
    abl = ablation_rows(runs)
    if len(abl) > 1:
        lines += ['', '## DetCon-B mask source (test)', '',
                  '| Masks | n | ' + ' | '.join(METRICS[c] for c in cols) + ' |', '|---|---|' + '---|' * len(cols)]
        for src, rs in abl.items():
            lines.append(f'| {src} | {len(rs)} | ' + ' | '.join(_fmt([test_value(r, c) for r in rs if
                                                                       test_value(r, c) is not None]) for c in cols)
                         + ' |')
    sweep = sweep_points(runs)
    mults = sorted({m for points in sweep.values() for m in points})
    if sweep:
        lines += ['', '## lr sweep (seed 0): held-out val selection score (mean of probe val scores)', '',
                  'Bold: selected. A sweep grows by ×4 steps while its best score is at one of its ends.', '',
                  '| Method | ' + ' | '.join(f'×{m:g}' for m in mults) + ' | inside the sweep |',
                  '|---|' + '---|' * (len(mults) + 1)]
        for method in [m for m in methods if m in sweep]:
            points, best = sweep[method], best_mult(sweep[method])
            cells = [('–' if m not in points else 'diverged' if points[m] == float('-inf') else
                      f'**{points[m]:.1f}**' if m == best else f'{points[m]:.1f}') for m in mults]
            inside = 'yes' if min(points) < best < max(points) else 'no'
            lines.append(f'| {method} | ' + ' | '.join(cells) + f' | {inside} |')
    return '\n'.join(lines) + '\n'


def sweep_points(runs: List[dict]) -> Dict[str, Dict[float, float]]:
    """Per method, the seed-0 sweep: lr multiplier -> val selection score (FH masks for DetCon)."""
    out: Dict[str, Dict[float, float]] = defaultdict(dict)
    for r in runs:
        if r['role'] in ('main', 'sweep') and r['seed'] == 0 and r['lr_mult'] is not None:
            out[r['method']][r['lr_mult']] = selection_score(r)
    return dict(out)


def best_mult(points: Dict[float, float]) -> float:
    """The selected multiplier: the best score, the lower lr on ties."""
    return max(sorted(points), key=lambda m: (points[m], -m))


def plots(runs: List[dict], methods: Sequence[str], out_dir: str,
          chance: Optional[Dict[str, float]] = None) -> List[str]:
    """metrics.png (per method, error bars = std over seeds, dashed line = chance), mask_ablation.png,
    compute.png, lr_sweep.png (val selection score against the lr multiplier, selected lr circled)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = main_rows(runs, methods)
    cols = metrics_of([r for rs in rows.values() for r in rs])
    names = list(rows)
    written = []

    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4), squeeze=False)
    for ax, c in zip(axes[0], cols):
        stats = [_mean_std([test_value(r, c) for r in rows[m]]) for m in names]
        ax.bar(range(len(names)), [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3,
               color=['0.6' if m == 'random' else f'C{i}' for i, m in enumerate(names)])
        ax.set_xticks(range(len(names)), names, rotation=45, ha='right', fontsize=8)
        ax.set_title(METRICS[c], fontsize=10)
        if chance and c in chance:
            ax.axhline(chance[c], ls='--', lw=0.8, color='k')
    fig.tight_layout()
    written.append(osp.join(out_dir, 'metrics.png'))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    abl = ablation_rows(runs)
    if len(abl) > 1:
        fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 3.0), squeeze=False)
        for ax, c in zip(axes[0], cols):
            stats = [_mean_std([test_value(r, c) for r in rs]) for rs in abl.values()]
            ax.bar(range(len(abl)), [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3,
                   color=['C7', 'C0', 'C2'][:len(abl)])
            ax.set_xticks(range(len(abl)), list(abl))
            ax.set_title(f'DetCon-B: {METRICS[c]}', fontsize=9)
        fig.tight_layout()
        written.append(osp.join(out_dir, 'mask_ablation.png'))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2), squeeze=False)
    for ax, c in zip(axes[0], cols):
        for i, m in enumerate(names):
            if any(r['cpu_s'] is None for r in rows[m]):
                continue  # a user's checkpoint: its pretraining compute is unknown
            cpu = np.mean([r['cpu_s'] for r in rows[m]]) / 60
            mean, std = _mean_std([test_value(r, c) for r in rows[m]])
            ax.errorbar([cpu], [mean], yerr=[std], fmt='o', capsize=3, label=m,
                        color='0.6' if m == 'random' else f'C{i}')
        ax.set_xlabel('pretraining CPU min per run', fontsize=8)
        ax.set_title(METRICS[c], fontsize=10)
    axes[0][-1].legend(fontsize=7, loc='best')
    fig.tight_layout()
    written.append(osp.join(out_dir, 'compute.png'))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    sweep = sweep_points(runs)
    if sweep:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        finite = [v for points in sweep.values() for v in points.values() if np.isfinite(v)]
        floor = min(finite) if finite else 0.0  # where diverged points are drawn
        for i, m in enumerate([m for m in methods if m in sweep]):
            points = sweep[m]
            xs = [x for x in sorted(points) if np.isfinite(points[x])]
            ax.plot(xs, [points[x] for x in xs], 'o-', color=f'C{i}', label=m, ms=4)
            bad = [x for x in sorted(points) if not np.isfinite(points[x])]
            ax.plot(bad, [floor] * len(bad), 'x', color=f'C{i}')
            best = best_mult(points)
            if np.isfinite(points[best]):
                ax.plot([best], [points[best]], 'o', ms=11, mfc='none', color=f'C{i}')
        ax.set_xscale('log', base=2)
        ax.set_xlabel('lr multiplier (× the recipe lr, linearly scaled to the batch)', fontsize=9)
        ax.set_ylabel('val selection score (mean of probe val scores)', fontsize=9)
        ax.set_title('lr sweep, seed 0 (circled: selected; x: diverged)', fontsize=10)
        ax.legend(fontsize=7, loc='best')
        fig.tight_layout()
        written.append(osp.join(out_dir, 'lr_sweep.png'))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def rewrite_report(results_json: str, out_dir=None) -> List[str]:
    """Regenerate results.md and the plots from a results.json (e.g. one committed with the docs)."""
    import json
    if not osp.isfile(results_json):
        raise FileNotFoundError(f'results file not found: {results_json}')
    with open(results_json) as f:
        results = json.load(f)
    out_dir = out_dir or osp.dirname(osp.abspath(results_json))
    os.makedirs(out_dir, exist_ok=True)
    methods = list(results['profile']['methods']) + list(results['profile'].get('extra', {}))
    md = osp.join(out_dir, 'results.md')
    with open(md, 'w') as f:
        f.write(markdown(results['runs'], methods, results['profile'], results.get('command', ''),
                         results.get('chance'), results.get('wall_min')))
    return [md] + plots(results['runs'], methods, out_dir, results.get('chance'))
