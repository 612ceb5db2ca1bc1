"""Step time of mmpretrain's ``LARS`` against mmdetcon's ``ForeachLARS`` on ResNet-50's parameters:
``python tools/analysis/bench_lars.py [--device cuda] [--repeats 20]``.

Both optimisers get their own copy of the parameters (param groups from the shipped DetCon schedule's
paramwise rules: biases and BN excluded from weight decay and adaptation, one group per parameter as
mmengine builds them) and the same random gradients; their ``step`` runs interleaved (A B A B ...) so that
load drifts affect both alike. Printed: the median step time of each, the ratio mmpretrain / ours, and the
host syncs one step makes (``Tensor.item`` calls counted; on CUDA each one waits for the device).
Cannot: time the step inside a real training iteration (there the syncs also stall the queued backward).
"""
import argparse
import copy
import json
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

PARAMWISE = dict(custom_keys={'bn': dict(decay_mult=0, lars_exclude=True),
                              'bias': dict(decay_mult=0, lars_exclude=True),
                              'downsample.1': dict(decay_mult=0, lars_exclude=True)})


def _count_items(step: Callable[[], None]) -> int:
    """Host syncs of one call of ``step``, counted as ``Tensor.item`` calls."""
    original, calls = torch.Tensor.item, [0]

    def counting(self: torch.Tensor):
        calls[0] += 1
        return original(self)
    torch.Tensor.item = counting
    try:
        step()
    finally:
        torch.Tensor.item = original
    return calls[0]


def main() -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--depth', type=int, default=50)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--json', help='also write the figures to this file')
    args = parser.parse_args()

    from mmengine.optim import build_optim_wrapper
    from mmpretrain.models import ResNet

    import mmdetcon  # noqa: F401  (registers ForeachLARS)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')  # both optimisers live in mmpretrain's registry

    device = torch.device(args.device)
    torch.manual_seed(0)
    base = ResNet(depth=args.depth).to(device)
    for p in base.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    steps = {}
    for kind in ('LARS', 'ForeachLARS'):
        model = copy.deepcopy(base)
        for p, q in zip(model.parameters(), base.parameters()):
            p.grad = q.grad.clone()
        wrapper = build_optim_wrapper(model, dict(
            type='OptimWrapper', paramwise_cfg=PARAMWISE,
            optimizer=dict(type=kind, lr=3.2, weight_decay=1.5e-6, momentum=0.9)))
        steps[kind] = wrapper.optimizer.step

    def timed(step: Callable[[], None]) -> float:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    syncs = {kind: _count_items(step) for kind, step in steps.items()}  # also the first (buffer) step
    for _ in range(args.warmup):
        for step in steps.values():
            timed(step)
    times = {kind: [] for kind in steps}
    for _ in range(args.repeats):
        for kind, step in steps.items():
            times[kind].append(timed(step))
    result = {f'{kind}_ms': 1e3 * statistics.median(t) for kind, t in times.items()}
    result['ratio_LARS_over_ForeachLARS'] = result['LARS_ms'] / result['ForeachLARS_ms']
    result.update({f'{kind}_item_calls_per_step': n for kind, n in syncs.items()})
    result['num_params'] = sum(1 for _ in base.parameters())
    print(f'ResNet-{args.depth} on {device} ({result["num_params"]} parameter tensors, '
          f'median of {args.repeats}): mmpretrain LARS {result["LARS_ms"]:.2f} ms '
          f'({syncs["LARS"]} .item() per step), ForeachLARS {result["ForeachLARS_ms"]:.2f} ms '
          f'({syncs["ForeachLARS"]}); LARS / ForeachLARS = {result["ratio_LARS_over_ForeachLARS"]:.2f}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
