"""Benchmark DetCon / DetCo against BYOL, MoCo v2, SimCLR, DenseCL and a random-init floor at equal budget.

``python tools/benchmark/run.py [--profile default|quick|in1k-coco] [--methods ...] [--seeds N] [--jobs N]``

Pretrains every method on the shape-only shapes scenes (same backbone, views, batch and images seen), sweeps the
lr on seed 0 (by x4 steps until the best val score has a swept lr on each side) and picks it on the held-out val
split, exports each online backbone with extract_backbone.py, fits the same dense / object / multi-label linear
probes on frozen features (``--detection`` adds a Mask R-CNN fine-tune) and writes results.json, results.md (with
paired 95 % intervals over seeds) and PNG plots to the work dir. Finished stages are reused, so an interrupted run
resumes. ``--profile in1k-coco`` writes the real-scale plan (plan.sh) and ``--launch`` runs it.
See docs/benchmark.md.
"""
import argparse
import dataclasses
import os
import os.path as osp
import shlex
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402

PROFILE_NAMES = ('default', 'quick', 'in1k-coco')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--profile', default='default', choices=PROFILE_NAMES)
    parser.add_argument('--quick', action='store_const', const='quick', dest='profile',
                        help='smoke run of every stage in a few minutes (= --profile quick)')
    parser.add_argument('--work-dir', help='default: work_dirs/benchmark (default profile), '
                        'work_dirs/benchmark_<profile> otherwise')
    parser.add_argument('--methods', nargs='+', help='subset of the profile\'s methods (and "random")')
    parser.add_argument('--seeds', type=int, default=1, help='seeds of the selected lr (the sweep uses seed 0)')
    parser.add_argument('--jobs', type=int, default=2, help='runs trained in parallel, one CPU thread each')
    parser.add_argument('--detection', nargs='?', type=int, const=1, default=0, metavar='EPOCHS',
                        help='also fine-tune the shapes Mask R-CNN from each reported backbone (default 1 epoch; '
                        'about 1 CPU hour per epoch and row at the default profile)')
    parser.add_argument('--checkpoint', action='append', default=[], metavar='NAME=CKPT',
                        help='evaluate a pretraining checkpoint of yours as an extra row (repeatable)')
    parser.add_argument('--set', nargs='+', default=[], metavar='FIELD=VALUE',
                        help='override profile fields, e.g. epochs=10 lr_multipliers=1,4')
    parser.add_argument('--report', metavar='RESULTS_JSON', help='only rewrite results.md and plots from a '
                        'results.json (into its folder, or --work-dir)')
    parser.add_argument('--launch', action='store_true', help='in1k-coco: run the plan, not only write it')
    parser.add_argument('--launcher', choices=['dist', 'slurm'], default='dist')
    parser.add_argument('--partition', help='slurm partition (in1k-coco with --launcher slurm)')
    parser.add_argument('--gpus', type=int, help='in1k-coco: GPUs per training step in total (default: each '
                        'recipe\'s); more than --gpus-per-node span nodes; another total batch than the recipe\'s '
                        'rescales the lr (--auto-scale-lr)')
    parser.add_argument('--gpus-per-node', type=int, default=8, help='in1k-coco (default 8)')
    parser.add_argument('--epochs', type=int, default=200,
                        help='in1k-coco: pretraining epochs of every method, each recipe\'s schedule scaled to it')
    parser.add_argument('--rehearse', action='store_true', help='in1k-coco: run the whole plan on CPU at toy size '
                        '(tiny ImageNet and COCO trees, 2 gloo processes per step, a few iterations each; '
                        'default work dir work_dirs/benchmark_in1k_coco_rehearsal)')
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')
    return parser.parse_args(argv)


def _override(profile, items):
    fields = {f.name: f for f in dataclasses.fields(profile)}
    changes = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or key not in fields or key in ('name', 'methods', 'extra'):
            raise UserError(f'--set {item}: expected FIELD=VALUE with FIELD one of '
                            f'{", ".join(k for k in fields if k not in ("name", "methods", "extra"))}')
        current = getattr(profile, key)
        try:
            if isinstance(current, tuple):
                kind = type(current[0]) if current else float
                changes[key] = tuple(kind(v) for v in value.split(',') if v)
            elif isinstance(current, bool):
                changes[key] = value.lower() in ('1', 'true', 'yes')
            else:
                changes[key] = type(current)(value)
        except ValueError:
            raise UserError(f'--set {item}: {value!r} is not a valid {key}') from None
    return profile.with_(**changes)


def main(args: argparse.Namespace) -> None:
    from mmdetcon.benchmark.profiles import METHODS, PROFILES
    command = 'python tools/benchmark/run.py ' + shlex.join(sys.argv[1:])
    if args.report:
        from mmdetcon.benchmark.report import rewrite_report
        for path in rewrite_report(args.report, args.work_dir):
            print(path)
        return
    methods = args.methods or (PROFILES['default'].methods if args.profile == 'in1k-coco'
                               else PROFILES[args.profile].methods)
    for m in methods:
        if m not in METHODS:
            raise UserError(f'unknown method {m!r}; choose from {", ".join(METHODS)}')
    work_dir = args.work_dir or osp.join('work_dirs', 'benchmark' if args.profile == 'default'
                                         else f'benchmark_{args.profile.replace("-", "_")}')
    if args.rehearse and args.profile != 'in1k-coco':
        raise UserError('--rehearse rehearses the real-scale plan: add --profile in1k-coco')
    if args.rehearse:
        from mmdetcon.benchmark.rehearsal import rehearse, summary
        start = time.time()
        rehearse(list(methods), args.work_dir or 'work_dirs/benchmark_in1k_coco_rehearsal')
        print(summary(args.work_dir or 'work_dirs/benchmark_in1k_coco_rehearsal')
              + f'\nrehearsal finished in {(time.time() - start) / 60:.1f} min')
        return
    if args.profile == 'in1k-coco':
        from mmdetcon.benchmark.gpu_plan import launch_plan, write_plan
        try:
            script = write_plan(list(methods), work_dir, launcher=args.launcher, partition=args.partition,
                                gpus=args.gpus, gpus_per_node=args.gpus_per_node, epochs=args.epochs)
        except ValueError as e:
            raise UserError(str(e)) from None
        with open(script) as f:
            print(f.read())
        print(f'plan written to {script}' + ('' if args.launch else '; run it, or add --launch'))
        if args.launch:
            launch_plan(osp.dirname(script))
            results_md = osp.join(osp.dirname(script), 'results.md')
            if osp.isfile(results_md):  # node 0 of a multi-node plan writes the table
                with open(results_md) as f:
                    print(f.read())
                print(f'wrote {osp.join(osp.dirname(script), "results.json")} and {results_md}')
        return

    extra = {}
    for item in args.checkpoint:
        name, sep, path = item.partition('=')
        if not sep or not name or name in METHODS:
            raise UserError(f'--checkpoint {item}: expected NAME=CKPT with a NAME that is not a method')
        if not osp.isfile(path):
            raise UserError(f'checkpoint not found: {path}')
        extra[name] = osp.abspath(path)
    if args.seeds < 1 or args.jobs < 1:
        raise UserError('--seeds and --jobs must be >= 1')
    profile = _override(PROFILES[args.profile], args.set).with_(methods=tuple(methods), extra=extra)
    if args.detection:
        try:
            import mmdetcon.datasets.shapes_coco  # noqa: F401
        except ImportError as e:
            raise UserError(f'--detection: {e}') from None

    from mmdetcon.benchmark.benchmark import run_benchmark
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch
    torch.set_num_threads(1)
    start = time.time()
    try:
        results = run_benchmark(profile, work_dir, args.seeds, args.jobs, args.detection, command)
    except ValueError as e:
        raise UserError(str(e)) from None
    with open(osp.join(work_dir, 'results.md')) as f:
        print(f.read())
    print(f'wrote {work_dir}/results.json, results.md, ' + ', '.join(osp.basename(p) for p in results['plots'])
          + f' in {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    run_cli(main, parse_args())
