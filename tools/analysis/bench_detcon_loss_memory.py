"""Peak memory of the DetCon loss (forward + backward) in units of one [B*R, 2*N*R] logits tensor.

    python tools/analysis/bench_detcon_loss_memory.py [--batch 32 64 128 256] [--masks 16]
        [--dim 256] [--form b|s] [--repeats 3] [--no-rss] [--json OUT.json] [--quiet]

One process (N = B), float32, random predictions / targets and ids drawn from 8 values per image
(duplicates and rows without a positive occur). Two formulations run in the same invocation:

- ``naive``: the loss as it was written before the chunked function (dense logits per direction,
  exclusions written by boolean indexing, ``torch.logsumexp``, positives gathered from the logits),
  restated in this file with plain autograd;
- ``chunked``: ``mmdetcon.models.losses.detcon_loss`` / ``detcon_s_loss`` as shipped.

Measurements, each divided by the bytes of one logits tensor (B*R * 2*B*R * 4):

- ``alloc``: peak tensor memory during the call above what was allocated before it, from the
  allocation events of ``torch.profiler`` (``profile_memory=True``): every CPU allocator
  allocation and free with its exact size, replayed in time order. This is what the loss asks of
  the allocator (what ``torch.cuda.max_memory_allocated`` reports on a GPU), independent of the
  rest of the process and of malloc's reuse, hence the target's measure.
- ``rss`` (Linux): growth of the peak resident set size of a fresh subprocess per measurement, the
  peak (VmHWM) reset through ``/proc/self/clear_refs`` just before the call; what the operating
  system sees, including malloc's caching and fragmentation. ``--no-rss`` skips it.
- ``time``: median wall time of ``--repeats`` further calls of each, interleaved, chunked / naive
  (the chunked backward recomputes the logits: one matrix product more per direction).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.models.losses import detcon_loss, detcon_s_loss  # noqa: E402

MIB = 2.**20
_EXCLUDED = -1e9


# ------------------------------------------------------------------------ naive formulation
def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True).clamp(min=1e-12))


def _naive_direction(query: torch.Tensor, keys_other: torch.Tensor, keys_same: torch.Tensor,
                     ids_query: torch.Tensor, ids_other: torch.Tensor, temperature: float,
                     local_negatives: bool) -> torch.Tensor:
    """One direction with dense logits [B*R, 2*N*R] under autograd (one process, offset 0)."""
    B, R, D = query.shape
    N = keys_other.shape[0]
    keys = torch.cat([keys_other, keys_same]).reshape(2 * N * R, D)
    logits = (query.reshape(B * R, D) / temperature) @ keys.t()  # [B*R, 2*N*R]
    pos = ids_query[:, :, None] == ids_other[:, None, :]  # [B,R,R]
    excl = ids_query[:, :, None] == ids_query[:, None, :]  # [B,R,R]
    local_col = torch.arange(B)[:, None] * R + torch.arange(R)  # [B,R]
    cols_other = local_col[:, None, :].expand(B, R, R)
    cols_same = cols_other + N * R
    rows = torch.arange(B * R).view(B, R, 1).expand(B, R, R)
    drop_same = excl if local_negatives else torch.ones_like(excl)
    drop = [(rows[drop_same], cols_same[drop_same])]
    if not local_negatives:
        drop.append((rows[~pos], cols_other[~pos]))
    for r, c in drop:
        logits.index_put_((r, c), logits.new_tensor(_EXCLUDED))
    log_norm = torch.logsumexp(logits, dim=1).view(B, R, 1)
    pos_logits = logits.gather(1, cols_other.reshape(B * R, R)).view(B, R, R)
    log_prob = torch.where(pos, pos_logits - log_norm, torch.zeros_like(pos_logits))
    num_pos = pos.sum(-1)
    row_loss = -log_prob.sum(-1) / num_pos.clamp(min=1)
    weight = (num_pos > 0).to(row_loss.dtype) / excl.sum(-1).to(row_loss.dtype)
    return (weight * row_loss).sum() / (B * R)


def naive_loss(pred1: torch.Tensor, pred2: torch.Tensor, target1: torch.Tensor,
               target2: torch.Tensor, ids1: torch.Tensor, ids2: torch.Tensor,
               temperature: float = 0.1, local_negatives: bool = True) -> torch.Tensor:
    """DetCon-B loss, naive form; pass target = pred for the DetCon-S form (keys keep grad)."""
    q1, q2 = _normalize(pred1), _normalize(pred2)
    simclr = target1 is pred1
    k1 = q1 if simclr else _normalize(target1.detach())
    k2 = q2 if simclr else _normalize(target2.detach())
    return (_naive_direction(q1, k2, k1, ids1, ids2, temperature, local_negatives) +
            _naive_direction(q2, k1, k2, ids2, ids1, temperature, local_negatives))


# ------------------------------------------------------------------------ measurement
def make_inputs(batch: int, masks: int, dim: int, seed: int = 0) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p1, p2, t1, t2 = (torch.randn(batch, masks, dim, generator=g) for _ in range(4))
    ids = [torch.randint(0, 8, (batch, masks), generator=g) for _ in range(2)]
    return [p1, p2, t1, t2] + ids


def loss_call(formulation: str, form: str, inputs: List[torch.Tensor]) -> Callable[[], None]:
    """A closure running forward + backward once on fresh leaf copies of the predictions."""
    p1, p2, t1, t2, i1, i2 = inputs

    def run() -> None:
        a, b = p1.clone().requires_grad_(), p2.clone().requires_grad_()
        if formulation == 'naive':
            loss = naive_loss(a, b, *((a, b) if form == 's' else (t1, t2)), i1, i2)
        elif form == 's':
            loss = detcon_s_loss(a, b, i1, i2)
        else:
            loss = detcon_loss(a, b, t1, t2, i1, i2)
        loss.backward()

    return run


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


def peak_allocated(fn: Callable[[], None]) -> int:
    """Peak bytes allocated (CPU allocator) during ``fn`` above the level before it."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    tree = prof.profiler.kineto_results.experimental_event_tree()
    events = sorted((e.start_time_ns, i, e.extra_fields.alloc_size)
                    for i, e in enumerate(_walk(tree)) if e.tag == _EventType.Allocation)
    level = peak = 0
    for _, _, size in events:
        level += size
        peak = max(peak, level)
    return peak


def _status_kib(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{key} not in /proc/self/status')


def rss_growth_child(formulation: str, form: str, batch: int, masks: int, dim: int) -> Dict:
    """In this (fresh) process: peak RSS growth of one call, after a tiny warm-up call."""
    loss_call(formulation, form, make_inputs(2, masks, dim))()  # library initialisation
    fn = loss_call(formulation, form, make_inputs(batch, masks, dim))
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    before = _status_kib('VmRSS')
    fn()
    return dict(rss_bytes=(_status_kib('VmHWM') - before) * 1024)


def rss_growth(formulation: str, form: str, batch: int, masks: int, dim: int) -> Optional[int]:
    if not (sys.platform.startswith('linux') and os.access('/proc/self/clear_refs', os.W_OK)):
        return None
    cmd = [sys.executable, osp.abspath(__file__), '--child', formulation, '--form', form,
           '--batch', str(batch), '--masks', str(masks), '--dim', str(dim)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])['rss_bytes']


def measure(batch: int, args: argparse.Namespace) -> Dict:
    inputs = make_inputs(batch, args.masks, args.dim)
    logits_bytes = (batch * args.masks) * (2 * batch * args.masks) * 4
    row = dict(batch=batch, masks=args.masks, logits_mib=logits_bytes / MIB)
    calls = {f: loss_call(f, args.form, inputs) for f in ('naive', 'chunked')}
    times: Dict[str, List[float]] = {f: [] for f in calls}
    for formulation, fn in calls.items():
        row[f'{formulation}_alloc'] = peak_allocated(fn) / logits_bytes  # also the warm-up
        if args.rss:
            rss = rss_growth(formulation, args.form, batch, args.masks, args.dim)
            row[f'{formulation}_rss'] = None if rss is None else rss / logits_bytes
    for _ in range(args.repeats):  # interleaved, so that load drifts affect both alike
        for formulation, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[formulation].append(time.perf_counter() - start)
    for formulation in calls:
        row[f'{formulation}_s'] = statistics.median(times[formulation])
    row['time_ratio'] = row['chunked_s'] / row['naive_s']
    return row


def table(rows: List[Dict], rss: bool) -> str:
    head = ['images x masks', 'logits MiB', 'naive alloc', 'chunked alloc']
    if rss:
        head += ['naive RSS', 'chunked RSS']
    head += ['time chunked/naive']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def x(v: Optional[float]) -> str:
        return '–' if v is None else f'{v:.2f}x'

    for r in rows:
        cells = [f"{r['batch']} x {r['masks']}", f"{r['logits_mib']:.1f}", x(r['naive_alloc']),
                 x(r['chunked_alloc'])]
        if rss:
            cells += [x(r['naive_rss']), x(r['chunked_rss'])]
        cells += [f"{r['time_ratio']:.2f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, nargs='+', default=[32, 64, 128, 256],
                        help='images per process (N = B)')
    parser.add_argument('--masks', type=int, default=16, help='masks per view R')
    parser.add_argument('--dim', type=int, default=256, help='projection dim D')
    parser.add_argument('--form', choices=['b', 's'], default='b',
                        help='DetCon-B (detached targets) or DetCon-S (gradient through the keys)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls of each formulation')
    parser.add_argument('--no-rss', dest='rss', action='store_false',
                        help='skip the per-measurement subprocess peak-RSS column')
    parser.add_argument('--json', help='also write the rows to this JSON file')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    parser.add_argument('--child', choices=['naive', 'chunked'], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batch) < 1 or args.masks < 1 or args.dim < 1 or args.repeats < 1:
        parser.error('--batch, --masks, --dim and --repeats must be >= 1')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(rss_growth_child(args.child, args.form, args.batch[0], args.masks,
                                          args.dim)))
        return
    from tqdm import tqdm
    rows = []
    for batch in tqdm(args.batch, desc='batch sizes', unit='size', disable=args.quiet,
                      file=sys.stderr):
        rows.append(measure(batch, args))
    print(f'DetCon-{args.form.upper()} loss, forward + backward, one process, float32, '
          f'D = {args.dim}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); '
          'peak memory over one [B*R, 2*N*R] logits tensor')
    print(table(rows, args.rss))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(form=args.form, dim=args.dim, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
