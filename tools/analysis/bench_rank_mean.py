"""Cost of logging rank means (``mmdetcon.models.utils.gather.rank_mean``) in a multi-process train step.

``python tools/analysis/bench_rank_mean.py --procs 2 --algo detcon-b --backbone resnet18 --batch 8 --size 96``

Starts ``--procs`` processes (gloo on CPU, nccl with ``--device cuda``), wraps the model of
``tools/analysis/bench_step.py`` in DDP and times, interleaved (A B A B ...), train steps with the rank mean
(A) and with it replaced by the identity (B), plus the rank mean alone on the algorithm's logged dict.
Prints medians (rank 0) and the ratios ``rank_mean / step`` and ``step A / step B``.
"""
import argparse
import importlib.util
import os.path as osp
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def _bench_step():
    spec = importlib.util.spec_from_file_location('bench_step', osp.join(ROOT, 'tools/analysis/bench_step.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def _worker(rank: int, args: argparse.Namespace, port: int) -> None:
    backend = 'nccl' if args.device == 'cuda' else 'gloo'
    dist.init_process_group(backend, init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=args.procs)
    torch.set_num_threads(args.threads)
    if args.device == 'cuda':
        torch.cuda.set_device(rank)
    try:
        import mmdetcon  # noqa: F401  (registers the models)
        from mmengine.logging import MessageHub
        from mmengine.model import MMDistributedDataParallel
        from mmengine.optim import OptimWrapper

        from mmdetcon.models.algorithms import detco, detcon
        from mmdetcon.models.utils.gather import rank_mean
        from mmdetcon.registry import MODELS
        MessageHub.get_current_instance().update_info('max_iters', 10 ** 6)
        bs = _bench_step()
        builder = {'detcon-b': bs.build_detcon_b, 'detco': bs.build_detco}[args.algo]
        cfg, data = builder(args.backbone, args.batch, args.size)
        if args.algo == 'detco':
            cfg['queue_len'] = 64 * args.batch * args.procs
        model = MODELS.build(cfg).to(args.device)
        model = MMDistributedDataParallel(model, device_ids=[rank] if args.device == 'cuda' else None,
                                          broadcast_buffers=False)
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
        module = detcon if args.algo == 'detcon-b' else detco
        times = {'with': [], 'without': []}
        for step in range(args.warmup + args.steps):
            for label, fn in (('with', rank_mean), ('without', lambda v: v)):
                module.rank_mean = fn
                dist.barrier()
                _sync(args.device)
                start = time.perf_counter()
                logged = model.train_step(data, optim)
                _sync(args.device)
                if step >= args.warmup:
                    times[label].append(time.perf_counter() - start)
        module.rank_mean = rank_mean
        values = {k: torch.as_tensor(v, device=args.device) for k, v in logged.items()}
        alone = []
        for _ in range(args.steps * 10):
            dist.barrier()
            _sync(args.device)
            start = time.perf_counter()
            rank_mean(values)
            _sync(args.device)
            alone.append(time.perf_counter() - start)
        if rank == 0:
            a, b = statistics.median(times['with']), statistics.median(times['without'])
            c = statistics.median(alone)
            print(f'{args.algo} {args.backbone} batch {args.batch}x{args.procs} {args.size}px {backend}: '
                  f'{len(values)} logged values')
            print(f'  step with rank mean {a * 1e3:.1f} ms, without {b * 1e3:.1f} ms (ratio {a / b:.3f}); '
                  f'rank mean alone {c * 1e3:.3f} ms = {c / b:.2%} of a step')
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--procs', type=int, default=2)
    parser.add_argument('--algo', choices=['detcon-b', 'detco'], default='detcon-b')
    parser.add_argument('--backbone', choices=['resnet18', 'resnet50'], default='resnet18')
    parser.add_argument('--batch', type=int, default=8, help='per process')
    parser.add_argument('--size', type=int, default=96)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1, help='torch threads per process (CPU)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    args = parser.parse_args()
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(args, port), nprocs=args.procs, join=True)


if __name__ == '__main__':
    main()
