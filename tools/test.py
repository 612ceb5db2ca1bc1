"""Evaluate a checkpoint with a config's test loop: ``python tools/test.py CONFIG CHECKPOINT [options]``.

Self-supervised pretraining configs have no test loop; use this with the benchmark configs (linear evaluation,
detection) that load an exported backbone.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdetcon.utils.cli import DictAction, UserError, load_config, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs and metrics '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the metrics (and predictions) to this pickle-free JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(args: argparse.Namespace) -> None:
    import json

    from mmengine.runner import Runner

    from mmdetcon.registry import RUNNERS  # mmpretrain's: holds MMDetConRunner and sees mmengine's

    cfg = load_config(args.config, args.cfg_options, args.launcher)
    if cfg.get('test_dataloader') is None or cfg.get('test_cfg') is None:
        raise UserError(f'{args.config} has no test_dataloader/test_cfg: pretraining configs are evaluated '
                        'through a benchmark config (see README, "Benchmarks")')
    if not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({k: float(v) if hasattr(v, '__float__') else v for k, v in metrics.items()}, f, indent=1)


if __name__ == '__main__':
    run_cli(main, parse_args())
