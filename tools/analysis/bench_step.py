"""Training-step cost of an algorithm against its image-level baseline at the same backbone, batch
and resolution: ``python tools/analysis/bench_step.py --backbone resnet18 --batch 16 --size 224``.

For each named pair (e.g. DetCon-B vs BYOL) both models run interleaved (A B A B ...) so that
machine load drifts affect both alike. Reported per model:

- ``step_ms``: median wall time of one ``train_step`` (data preprocessor, forward, backward, LARS
  step), after ``--warmup`` untimed steps.
- ``step_cpu_ms``: median CPU time of the process over the same steps (``time.process_time``, all
  threads). On a CPU shared with other jobs it is the steadier measure: wall time also counts the
  time the process waits for a core. On CUDA it is the host's time only.
- ``step_peak_mb``: peak tensor memory allocated during one step above what was allocated before it
  (parameters, optimiser state). CUDA: ``torch.cuda.max_memory_allocated``; CPU: the allocation
  timeline of ``torch.profiler`` (``profile_memory=True``) over one extra step (tensor memory only,
  not the process RSS; frees are attributed to the start of their operator, so it is a close lower
  bound). ``peak_mb`` (CUDA only): the absolute peak during the step.
- ``gflop``: floating-point operations of one ``train_step`` (forward + backward), counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; an FMA counts 2).
  The ``ratio`` row's ``gflop`` is the inherent cost ratio that ``step_ms``'s ratio is judged against.

Ratios are algorithm / baseline. Both members of a pair use the same projector (and predictor)
widths; the inputs are random images and, for DetCon, random block-shaped segment maps.
To add a pair, write two builders ``(backbone, batch, size) -> (model_cfg, data)`` and register
them in ``PAIRS``.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, Tuple

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

WIDTH = {'resnet18': 512, 'resnet50': 2048}
DEPTH = {'resnet18': 18, 'resnet50': 50}
BN = dict(type='BN')
BN1D = dict(type='BN1d')  # the MLPs normalise [rows, channels]
PREPROCESSOR = dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375], to_rgb=True)


def _backbone(name: str) -> dict:
    return dict(type='ResNet', depth=DEPTH[name], out_indices=(3, ), norm_cfg=BN,
                zero_init_residual=True)


def _mlp(in_channels: int, avg_pool: bool) -> dict:
    """DetCon/BYOL projector/predictor shape: Linear-BN-ReLU-Linear, 4096 hidden, 256 out."""
    return dict(type='NonLinearNeck', in_channels=in_channels, hid_channels=4096, out_channels=256,
                num_layers=2, with_bias=True, with_last_bn=False, with_avg_pool=avg_pool,
                norm_cfg=BN1D)


def _views(batch: int, size: int) -> list:
    return [torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8) for _ in range(2)]


def _plain_data(batch: int, size: int) -> dict:
    from mmpretrain.structures import DataSample
    return dict(inputs=_views(batch, size), data_samples=[DataSample() for _ in range(batch)])


def _mask_data(batch: int, size: int, num_ids: int = 12) -> dict:
    """Views plus (2, size, size) id maps made of 32-px blocks with up to ``num_ids`` ids."""
    from mmpretrain.structures import DataSample
    samples = []
    for _ in range(batch):
        coarse = torch.randint(0, num_ids, (2, size // 32, size // 32), dtype=torch.int32)
        samples.append(DataSample(mask=coarse.repeat_interleave(32, 1).repeat_interleave(32, 2)))
    return dict(inputs=_views(batch, size), data_samples=samples)


def build_detcon_b(backbone: str, batch: int, size: int) -> Tuple[dict, dict]:
    cfg = dict(type='DetConB', backbone=_backbone(backbone), data_preprocessor=PREPROCESSOR,
               neck=dict(_mlp(WIDTH[backbone], False), type='DetConNeck'),
               head=dict(type='DetConHead', predictor=_mlp(256, False),
                         loss=dict(type='DetConLoss')))
    cfg['neck'].pop('with_avg_pool')
    return cfg, _mask_data(batch, size)


def build_byol(backbone: str, batch: int, size: int) -> Tuple[dict, dict]:
    cfg = dict(type='BYOL', base_momentum=0.004, backbone=_backbone(backbone),
               data_preprocessor=PREPROCESSOR, neck=_mlp(WIDTH[backbone], True),
               head=dict(type='LatentPredictHead', predictor=_mlp(256, False),
                         loss=dict(type='CosineSimilarityLoss')))
    return cfg, _plain_data(batch, size)


def build_detcon_s(backbone: str, batch: int, size: int) -> Tuple[dict, dict]:
    cfg, data = build_detcon_b(backbone, batch, size)
    cfg.update(type='DetConS', head=dict(type='DetConHead', loss=dict(type='DetConLoss',
                                                                       simclr=True)))
    return cfg, data


def build_simclr(backbone: str, batch: int, size: int) -> Tuple[dict, dict]:
    cfg = dict(type='SimCLR', backbone=_backbone(backbone), data_preprocessor=PREPROCESSOR,
               neck=_mlp(WIDTH[backbone], True),
               head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                         temperature=0.1))
    return cfg, _plain_data(batch, size)


STAGES = {'resnet18': (64, 128, 256, 512), 'resnet50': (256, 512, 1024, 2048)}
QUEUE = 65536  # MoCo v2 / DetCo queue length (a multiple of every --batch up to 256 that is a power of 2)


def build_detco(backbone: str, batch: int, size: int) -> Tuple[dict, dict]:
    """DetCo: 2 global views plus 2 sets of 9 patches of 64/224 of the view size (64 px at 224)."""
    from mmpretrain.structures import DataSample
    patch = round(size * 64 / 224)
    cfg = dict(type='DetCo', queue_len=QUEUE, feat_dim=128, momentum=0.001,
               backbone=dict(_backbone(backbone), out_indices=(0, 1, 2, 3), zero_init_residual=False),
               data_preprocessor=PREPROCESSOR, neck=dict(type='DetCoNeck', in_channels=STAGES[backbone]),
               head=dict(type='DetCoLoss', temperature=0.2))
    patches = [torch.randint(0, 256, (batch, 3, patch, patch), dtype=torch.uint8) for _ in range(18)]
    return cfg, dict(inputs=_views(batch, size) + patches, data_samples=[DataSample() for _ in range(batch)])


def build_mocov2(backbone: str, batch: int, size: int) -> Tuple[dict, dict]:
    cfg = dict(type='MoCo', queue_len=QUEUE, feat_dim=128, momentum=0.001,
               backbone=dict(_backbone(backbone), zero_init_residual=False), data_preprocessor=PREPROCESSOR,
               neck=dict(type='MoCoV2Neck', in_channels=WIDTH[backbone], hid_channels=WIDTH[backbone],
                         out_channels=128, with_avg_pool=True),
               head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2))
    return cfg, _plain_data(batch, size)


Builder = Callable[[str, int, int], Tuple[dict, dict]]
# name -> ((algorithm label, builder), (baseline label, builder))
PAIRS: Dict[str, Tuple[Tuple[str, Builder], Tuple[str, Builder]]] = {
    'detcon-b': (('DetCon-B', build_detcon_b), ('BYOL', build_byol)),
    'detcon-s': (('DetCon-S', build_detcon_s), ('SimCLR', build_simclr)),
    'detco': (('DetCo', build_detco), ('MoCoV2', build_mocov2)),
}



def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak tensor bytes allocated on CPU during ``fn`` above the level before it: the profiler's allocation
    and free events replayed in time order (tensor memory only, as ``torch.cuda.max_memory_allocated``)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    level = peak = 0
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        level += ev.cpu_memory_usage if ev.name == '[memory]' else ev.self_cpu_memory_usage
        peak = max(peak, level)
    return peak


class _Runner:
    """One model with its optimiser and a fixed batch on ``device``."""

    def __init__(self, builder: Builder, args: argparse.Namespace) -> None:
        from mmengine.optim import OptimWrapper
        from mmpretrain.engine.optimizers import LARS
        from mmdetcon.registry import MODELS
        cfg, self.data = builder(args.backbone, args.batch, args.size)
        self.model = MODELS.build(cfg).to(args.device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = OptimWrapper(LARS(params, lr=0.1, momentum=0.9, weight_decay=1e-6))
        self.device = torch.device(args.device)
        self.times = []
        self.cpu_times = []

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def step(self) -> Tuple[float, float]:
        """One train_step: (wall seconds, process CPU seconds)."""
        self._sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        self.model.train_step(self.data, self.optim)
        self._sync()
        return time.perf_counter() - start, time.process_time() - cpu_start

    def gflop(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            self.model.train_step(self.data, self.optim)
        return counter.get_total_flops() / 1e9

    def memory(self) -> Dict[str, float]:
        mib = 2.**20
        if self.device.type == 'cuda':
            self._sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            self.step()
            peak = torch.cuda.max_memory_allocated(self.device)
            return dict(step_peak_mb=(peak - before) / mib, peak_mb=peak / mib)
        return dict(step_peak_mb=cpu_peak_bytes(self.step) / mib)


def bench_pair(name: str, args: argparse.Namespace) -> Dict[str, dict]:
    (label_a, build_a), (label_b, build_b) = PAIRS[name]
    runners = {label_a: _Runner(build_a, args), label_b: _Runner(build_b, args)}
    for _ in range(args.warmup):
        for r in runners.values():
            r.step()
    for _ in range(args.repeats):  # interleaved: A B A B ...
        for r in runners.values():
            wall, cpu = r.step()
            r.times.append(wall)
            r.cpu_times.append(cpu)
    out = {}
    for label, r in runners.items():
        out[label] = dict(step_ms=1e3 * statistics.median(r.times),
                          step_ms_all=[1e3 * t for t in r.times],
                          step_cpu_ms=1e3 * statistics.median(r.cpu_times),
                          step_cpu_ms_all=[1e3 * t for t in r.cpu_times], gflop=r.gflop(), **r.memory())
    a, b = out[label_a], out[label_b]
    out['ratio'] = {k: a[k] / b[k] for k in a if k in b and not k.endswith('_all') and b[k] > 0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backbone', choices=sorted(WIDTH), default='resnet18')
    parser.add_argument('--batch', type=int, default=16, help='images per step')
    parser.add_argument('--size', type=int, default=224, help='view size (multiple of 32)')
    parser.add_argument('--repeats', type=int, default=10, help='timed steps per model')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps per model')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--pairs', nargs='+', choices=sorted(PAIRS), default=sorted(PAIRS))
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args()
    if args.size % 32:
        parser.error(f'--size must be a multiple of 32, got {args.size}')
    if args.threads:
        torch.set_num_threads(args.threads)

    import mmdetcon  # noqa: F401  (registers the models)
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('max_iters', 10**6)  # CosineEMA schedules
    torch.manual_seed(0)

    results = dict(setup=dict(vars(args), torch=torch.__version__, threads=torch.get_num_threads(),
                              device_name=(torch.cuda.get_device_name() if 'cuda' in args.device
                                           else 'cpu')),
                   pairs={})
    print(f'{args.backbone}, batch {args.batch}, {args.size}px, {args.device}, '
          f'{args.repeats} interleaved repeats (median), torch threads {torch.get_num_threads()}')
    head = (f'{"pair":<10} {"model":<10} {"step ms":>9} {"CPU ms":>9} {"GFLOP":>9} '
            f'{"step peak MiB":>14}')
    print(head + '\n' + '-' * len(head))
    for name in args.pairs:
        res = results['pairs'][name] = bench_pair(name, args)
        for label, r in res.items():
            if label == 'ratio':
                print(f'{name:<10} {"ratio":<10} {r["step_ms"]:>9.3f} {r["step_cpu_ms"]:>9.3f} '
                      f'{r["gflop"]:>9.3f} {r["step_peak_mb"]:>14.3f}')
            else:
                print(f'{name:<10} {label:<10} {r["step_ms"]:>9.1f} {r["step_cpu_ms"]:>9.1f} '
                      f'{r["gflop"]:>9.1f} {r["step_peak_mb"]:>14.1f}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
        print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
