"""Check a GPU node in one command: ``python tools/analysis/gpu_check.py`` (``--device cpu``: the same checks, tiny).

Checks, one row each in the table printed at the end (stdout; progress lines go to stderr):

- ``pair <algorithm> / <baseline>``: DetCon-B / BYOL, DetCon-S / SimCLR, DetCo / MoCo v2. The algorithm is the model
  of its shipped ImageNet-1k config (``configs/detcon/*_in1k.py``, ``configs/detco/detco_resnet50_*_in1k.py``),
  the baseline the matched-width builder of ``tools/analysis/bench_step.py``; both train with the algorithm's
  ``optim_wrapper`` (ForeachLARS for DetCon, SGD for DetCo) on synthetic views (and 32-px block id maps), no
  dataset. Columns: step-time ratios (median of interleaved steps after warm-up, ``torch.cuda.synchronize``
  bracketed) and step peak-memory ratios (``torch.cuda.max_memory_allocated`` above what was allocated before the
  step; on CPU the ``torch.profiler`` allocation timeline), in float32 and under AMP (``--amp``'s optim wrapper,
  :func:`mmdetcon.engine.amp_optim_wrapper_cfg`: mmengine's ``AmpOptimWrapper``, float16 with loss scaling, on a
  GPU; bfloat16 autocast on CPU). Fails on a non-finite loss.
- ``sync-free step <algorithm>``: one float32 ``train_step`` (after warm-up) under
  ``torch.cuda.set_sync_debug_mode('error')``; a host sync raises, and the row names the first frame outside torch
  that caused it. Skipped on CPU, where no host sync exists to detect.
- ``mmcv op``: ``mmcv.ops.roi_align`` and ``nms`` on the device against hand-derived results (bilinear sampling
  of a linear ramp is exact); a CPU-only mmcv wheel fails here, saying how to build one with CUDA ops.
- ``DDP DetCon-B``: one process per visible GPU (NCCL; 2 gloo processes on CPU), SyncBN (BN on CPU) and the
  loss's gathered negatives, a few steps on different data per rank: losses finite and equal across ranks (the
  logged loss is the rank mean), parameters identical across ranks afterwards.

Scale: ResNet-50, 224 px, 64 images per GPU on CUDA; ResNet-18, 64 px, 2 images, 1 warm-up and 2 timed steps on
CPU (the ratios there only show that the code runs). Exits 1 when a check fails, 2 when ``--device cuda`` sees no
GPU. Installs nothing: the node needs the stack already installed (docs/benchmark.md, "GPU check").
"""
import argparse
import copy
import json
import math
import os.path as osp
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
for _path in (ROOT, osp.join(ROOT, 'tools', 'analysis')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

CONFIGS = {
    'detcon-b': 'configs/detcon/detcon-b_resnet50_16xb256-lars-coslr-1000e_in1k.py',
    'detcon-s': 'configs/detcon/detcon-s_resnet50_16xb256-lars-coslr-1000e_in1k.py',
    'detco': 'configs/detco/detco_resnet50_8xb32-coslr-200e_in1k.py',
}
# pair -> (algorithm label, baseline label, name of the baseline builder in bench_step)
PAIRS = {
    'detcon-b': ('DetCon-B', 'BYOL', 'build_byol'),
    'detcon-s': ('DetCon-S', 'SimCLR', 'build_simclr'),
    'detco': ('DetCo', 'MoCoV2', 'build_mocov2'),
}
CHECKS = ('pairs', 'sync', 'mmcv', 'ddp')
# CPU scale: small enough for the test suite, large enough that every code path runs
# (hid: the 4096-wide hidden layers of the DetCon/BYOL MLPs, on both sides of a pair; None keeps the configs')
CPU_SCALE = dict(backbone='resnet18', size=64, batch=2, warmup=1, repeats=1, queue_len=256, hid=512, ddp_steps=2)
GPU_SCALE = dict(backbone='resnet50', size=224, batch=64, warmup=3, repeats=10, queue_len=None, hid=None,
                 ddp_steps=3)
STAGES = {'resnet18': (64, 128, 256, 512), 'resnet50': (256, 512, 1024, 2048)}
DEPTH = {'resnet18': 18, 'resnet50': 50}


def _rescale(node: Any, scale: dict) -> Any:
    """``scale``'s queue length and MLP width in a model config, in place (the tiny CPU run)."""
    if isinstance(node, dict):
        if scale['queue_len'] and 'queue_len' in node:
            node['queue_len'] = scale['queue_len']
        if scale['hid'] and node.get('hid_channels') == 4096:
            node['hid_channels'] = scale['hid']
        for value in node.values():
            _rescale(value, scale)
    return node


class CheckFailed(Exception):
    """A check ran and found something wrong (its message is the table's status)."""


def log(msg: str) -> None:
    print(f'[gpu_check] {msg}', file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- models and data
def load_cfg(pair: str):
    from mmengine.config import Config
    return Config.fromfile(osp.join(ROOT, CONFIGS[pair]))


def algorithm_model_cfg(pair: str, scale: dict) -> Tuple[dict, dict]:
    """(model cfg, optim_wrapper cfg) of the pair's shipped in1k config, at ``scale``'s backbone and queue."""
    cfg = load_cfg(pair)
    model = copy.deepcopy(cfg.model.to_dict())
    model.setdefault('data_preprocessor', cfg.data_preprocessor.to_dict())  # as mmengine's Runner does
    backbone = scale['backbone']
    if model['backbone']['depth'] != DEPTH[backbone]:
        model['backbone']['depth'] = DEPTH[backbone]
        if pair == 'detco':
            model['neck']['in_channels'] = STAGES[backbone]
        else:
            model['neck']['in_channels'] = STAGES[backbone][-1]
    return _rescale(model, scale), copy.deepcopy(cfg.optim_wrapper.to_dict())


def baseline_model_cfg(pair: str, scale: dict) -> dict:
    import bench_step
    model, _ = getattr(bench_step, PAIRS[pair][2])(scale['backbone'], scale['batch'], scale['size'])
    return _rescale(model, scale)


def synthetic_data(pair: str, batch: int, size: int, seed: int, pin: bool, masks: bool = True) -> dict:
    """Random uint8 views (DetCo: plus its 18 patches); DetCon: ``masks`` [B, 2, H, W] int32 of 32-px blocks
    with up to 12 ids, as ``PackDetConInputs`` collates them."""
    import bench_step
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    if pair == 'detco':
        _, data = bench_step.build_detco('resnet18', batch, size)  # shapes only; values redrawn below
        inputs = [torch.randint(0, 256, x.shape, dtype=torch.uint8, generator=gen) for x in data['inputs']]
    else:
        inputs = [torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
                  for _ in range(2)]
    data = dict(inputs=inputs, data_samples=[DataSample() for _ in range(batch)])
    if pair != 'detco' and masks:
        coarse = torch.randint(0, 12, (batch, 2, size // 32, size // 32), dtype=torch.int32, generator=gen)
        data['masks'] = coarse.repeat_interleave(32, 2).repeat_interleave(32, 3)
    if pin:  # what the loader's pin_memory=True hands over; the preprocessors copy non_blocking
        data['inputs'] = [x.pin_memory() for x in data['inputs']]
        if 'masks' in data:
            data['masks'] = data['masks'].pin_memory()
    return data


class Trainee:
    """One model, its optim wrapper and a fixed batch on ``device``."""

    def __init__(self, model_cfg: dict, optim_cfg: dict, data: dict, device: torch.device, amp: bool) -> None:
        from mmengine.model import revert_sync_batchnorm
        from mmengine.optim import build_optim_wrapper
        from mmdetcon.registry import MODELS
        self.device = device
        self.model = revert_sync_batchnorm(MODELS.build(copy.deepcopy(model_cfg))).to(device).train()
        optim_cfg = copy.deepcopy(optim_cfg)
        if amp:
            from mmdetcon.engine import amp_optim_wrapper_cfg
            optim_cfg, _ = amp_optim_wrapper_cfg(optim_cfg, device.type)
        self.optim = build_optim_wrapper(self.model, optim_cfg)
        self.data = data
        self.times: List[float] = []
        self.losses: List[torch.Tensor] = []

    def sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def step(self) -> float:
        """One ``train_step``; wall seconds, synchronize-bracketed on CUDA. The loss stays on the device."""
        self.sync()
        start = time.perf_counter()
        log_vars = self.model.train_step(self.data, self.optim)
        self.sync()
        self.losses.append(log_vars['loss'].detach())
        return time.perf_counter() - start

    def step_peak(self) -> float:
        """Peak tensor memory of one step above what was allocated before it, bytes."""
        if self.device.type == 'cuda':
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            self.step()
            return float(torch.cuda.max_memory_allocated(self.device) - before)
        import bench_step
        return float(bench_step.cpu_peak_bytes(self.step))

    def check_finite(self, label: str) -> None:
        losses = torch.stack(self.losses).float().cpu()
        if not torch.isfinite(losses).all():
            raise CheckFailed(f'{label}: non-finite loss {losses.tolist()}')


def run_pair(pair: str, scale: dict, device: torch.device, amp: bool) -> Dict[str, float]:
    """Time and peak-memory ratios (algorithm / baseline) of one pair in one precision."""
    alg_label, base_label, _ = PAIRS[pair]
    alg_cfg, optim_cfg = algorithm_model_cfg(pair, scale)
    pin = device.type == 'cuda'
    trainees = {alg_label: Trainee(alg_cfg, optim_cfg, synthetic_data(pair, scale['batch'], scale['size'], 0, pin),
                                   device, amp),
                base_label: Trainee(baseline_model_cfg(pair, scale), optim_cfg,
                                    synthetic_data(pair, scale['batch'], scale['size'], 0, pin, masks=False),
                                    device, amp)}
    for _ in range(scale['warmup']):
        for t in trainees.values():
            t.step()
    for _ in range(scale['repeats']):  # interleaved: A B A B ...
        for t in trainees.values():
            t.times.append(t.step())
    peaks = {label: t.step_peak() for label, t in trainees.items()}
    for label, t in trainees.items():
        t.check_finite(f'{label} ({"AMP" if amp else "fp32"})')
    times = {label: statistics.median(t.times) for label, t in trainees.items()}
    log(f'{pair} {"AMP" if amp else "fp32"}: ' + ', '.join(
        f'{label} {1e3 * times[label]:.1f} ms, {peaks[label] / 2**20:.1f} MiB' for label in trainees))
    del trainees
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return dict(time=times[alg_label] / times[base_label],
                mem=peaks[alg_label] / peaks[base_label] if peaks[base_label] > 0 else math.nan,
                alg_ms=1e3 * times[alg_label], base_ms=1e3 * times[base_label],
                alg_mib=peaks[alg_label] / 2**20, base_mib=peaks[base_label] / 2**20)


# -------------------------------------------------------------------------------------------------- sync check
def sync_culprit(exc: BaseException) -> str:
    """The innermost frame outside torch of ``exc``'s traceback, as ``file:line in function``, plus ``via`` the
    innermost torch frame when the sync happened in torch's Python code."""
    torch_dir = osp.dirname(torch.__file__)

    def where(f: traceback.FrameSummary) -> str:
        name = osp.relpath(f.filename, ROOT) if f.filename.startswith(ROOT) else f.filename
        return f'{name}:{f.lineno} in {f.name}'

    frames = traceback.extract_tb(exc.__traceback__)
    outside = [f for f in frames if not f.filename.startswith(torch_dir)]
    if not outside:
        return 'unknown frame'
    via = f' via {where(frames[-1])}' if frames[-1] is not outside[-1] else ''
    return where(outside[-1]) + via


def check_sync_free(pair: str, scale: dict, device: torch.device) -> str:
    """One float32 step of the algorithm under ``set_sync_debug_mode('error')``."""
    alg_cfg, optim_cfg = algorithm_model_cfg(pair, scale)
    trainee = Trainee(alg_cfg, optim_cfg, synthetic_data(pair, scale['batch'], scale['size'], 0, True),
                      device, amp=False)
    for _ in range(max(scale['warmup'], 2)):  # first steps: EMA copy, lazy initialisation
        trainee.step()
    trainee.sync()
    torch.cuda.set_sync_debug_mode('error')
    try:
        log_vars = trainee.model.train_step(trainee.data, trainee.optim)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckFailed(f'host sync at {sync_culprit(e)}: {first}') from None
    finally:
        torch.cuda.set_sync_debug_mode(0)
    trainee.sync()
    trainee.losses.append(log_vars['loss'].detach())
    trainee.check_finite(PAIRS[pair][0])
    del trainee
    torch.cuda.empty_cache()
    return 'ok: no host sync in one train_step'


# ----------------------------------------------------------------------------------------------------- mmcv op
def mmcv_rebuild_hint() -> str:
    return (f'build mmcv with CUDA ops on a node with nvcc: `PYTHON={sys.executable} tools/install_mmcv.sh '
            '--cuda-ops` (or `--wheel-only` once per cluster, then install the cached wheel on every node)')


def check_mmcv_op(device: torch.device) -> str:
    """``roi_align`` and ``nms`` of mmcv on ``device`` against hand-derived results."""
    try:
        from mmcv.ops import nms, roi_align
    except ImportError as e:
        from mmdetcon.utils.cli import mmcv_ops_message
        raise CheckFailed(mmcv_ops_message('this check', e)) from None
    # f[c, y, x] = x + 10 y + 100 c is linear, so bilinear sampling is exact: with aligned=True and
    # sampling_ratio=2, bin (i, j) of box (x1, y1, x2, y2) averages to x1 - .5 + (j + .5) w + 10 (y1 - .5 + (i + .5) h)
    H = W = 8
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing='ij')
    feat = torch.stack([xs + 10 * ys + 100 * c for c in range(2)])[None]  # [1, 2, H, W]
    x1, y1, x2, y2 = 1.5, 2.0, 5.5, 6.0
    rois = torch.tensor([[0., x1, y1, x2, y2]])
    expected = torch.empty(1, 2, 2, 2)
    bw, bh = (x2 - x1) / 2, (y2 - y1) / 2
    for c in range(2):
        for i in range(2):
            for j in range(2):
                expected[0, c, i, j] = (x1 - .5 + (j + .5) * bw) + 10 * (y1 - .5 + (i + .5) * bh) + 100 * c
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([.9, .8, .7])  # IoU(0, 1) = 81 / 119 > 0.5: box 1 goes; box 2 overlaps nothing
    try:
        out = roi_align(feat.to(device), rois.to(device), (2, 2), 1.0, 2, 'avg', True).cpu()
        _, keep = nms(boxes.to(device), scores.to(device), 0.5)
        keep = keep.cpu()
    except (RuntimeError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if device.type == 'cuda':
            raise CheckFailed(f'mmcv op on {device} failed ({first}): the installed mmcv has no CUDA ops? '
                              + mmcv_rebuild_hint()) from None
        raise CheckFailed(f'mmcv op on {device} failed: {first}') from None
    if not torch.allclose(out, expected, atol=1e-4):
        raise CheckFailed(f'roi_align on {device}: {out.flatten().tolist()} != {expected.flatten().tolist()}')
    if keep.tolist() != [0, 2]:
        raise CheckFailed(f'nms on {device} kept {keep.tolist()}, expected [0, 2]')
    return f'ok: roi_align, nms on {device}'


# --------------------------------------------------------------------------------------------------------- DDP
def _ddp_worker(rank: int, world: int, device_type: str, scale: dict, init_file: str, out_file: str) -> None:
    import torch.distributed as dist
    from mmengine.logging import MessageHub
    from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    _setup_scope()
    from mmdetcon.registry import MODELS
    MessageHub.get_current_instance().update_info('max_iters', 10**6)
    if device_type == 'cuda':
        torch.cuda.set_device(rank)
        device = torch.device('cuda', rank)
        backend = 'nccl'
    else:
        torch.set_num_threads(1)
        device = torch.device('cpu')
        backend = 'gloo'
    dist.init_process_group(backend, init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial weights everywhere (DDP also broadcasts rank 0's)
        model_cfg, optim_cfg = algorithm_model_cfg('detcon-b', scale)
        model = MODELS.build(model_cfg)
        if device_type != 'cuda':
            model = revert_sync_batchnorm(model)  # SyncBatchNorm runs on GPUs only
        model = model.to(device).train()
        ddp = MMDistributedDataParallel(module=model, device_ids=[rank] if device_type == 'cuda' else None,
                                        broadcast_buffers=False, find_unused_parameters=False)
        optim = build_optim_wrapper(ddp.module, optim_cfg)
        losses = []
        for step in range(scale['ddp_steps']):
            data = synthetic_data('detcon-b', scale['batch'], scale['size'], seed=1000 * step + rank + 1,
                                  pin=device_type == 'cuda')
            losses.append(ddp.train_step(data, optim)['loss'].detach().float().reshape(()))
        local = torch.stack(losses)
        params = torch.stack([p.detach().double().sum() for p in ddp.module.parameters() if p.requires_grad])
        gathered_losses = [torch.empty_like(local) for _ in range(world)]
        gathered_params = [torch.empty_like(params) for _ in range(world)]
        dist.all_gather(gathered_losses, local)
        dist.all_gather(gathered_params, params)
        if rank == 0:
            with open(out_file, 'w') as f:
                json.dump(dict(losses=[g.cpu().tolist() for g in gathered_losses],
                               params=[g.cpu().tolist() for g in gathered_params]), f)
    finally:
        dist.destroy_process_group()


def check_ddp(scale: dict, device: torch.device, world: int) -> str:
    """DetCon-B over ``world`` processes: finite losses equal across ranks, parameters in sync."""
    import torch.multiprocessing as mp
    if world < 1:
        raise CheckFailed('no GPU for DDP')
    with tempfile.TemporaryDirectory() as tmp:
        init_file, out_file = osp.join(tmp, 'init'), osp.join(tmp, 'result.json')
        try:  # CUDA cannot fork once initialised; on CPU fork saves each child the imports
            mp.start_processes(_ddp_worker, args=(world, device.type, scale, init_file, out_file), nprocs=world,
                               join=True, start_method='spawn' if device.type == 'cuda' else 'fork')
        except Exception as e:  # ProcessRaisedException / ProcessExitedException carry the rank's traceback
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            raise CheckFailed(f'DDP over {world} processes failed: {lines[-1] if lines else type(e).__name__}') \
                from None
        with open(out_file) as f:
            result = json.load(f)
    losses = torch.tensor(result['losses'], dtype=torch.float64)  # [world, steps]
    params = torch.tensor(result['params'], dtype=torch.float64)  # [world, parameters]
    if not torch.isfinite(losses).all():
        raise CheckFailed(f'DDP: non-finite losses {losses.tolist()}')
    if not torch.allclose(losses, losses[:1].expand_as(losses), rtol=1e-6, atol=0):
        raise CheckFailed(f'DDP: the logged loss (the rank mean) differs across ranks: {losses.tolist()}')
    gap = (params - params[:1]).abs().max().item()
    scale_ = params.abs().max().item()
    if gap > 1e-6 * max(scale_, 1.0):
        raise CheckFailed(f'DDP: parameters out of sync across ranks after {losses.shape[1]} steps '
                          f'(max gap {gap:.3g} of per-parameter sums)')
    return (f'ok: {world} ranks ({"nccl" if device.type == "cuda" else "gloo"}), {losses.shape[1]} steps, '
            f'losses finite and equal, parameters in sync')


# ------------------------------------------------------------------------------------------------------- main
class _DropFrozenWarnings:
    """Logging filter: the optim wrapper constructor's one warning per frozen (EMA / momentum) parameter."""

    def filter(self, record: Any) -> bool:
        return 'since its requires_grad=False' not in record.getMessage()


def _setup_scope() -> None:
    """mmdetcon's registries and default scope; mmengine's log (warnings and up) on stderr: stdout is the table."""
    import logging
    from mmengine.logging import MMLogger
    from mmdetcon.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    if MMLogger.check_instance_created('gpu_check'):
        MMLogger.get_instance('gpu_check')  # the current logger again
        return
    logger = MMLogger.get_instance('gpu_check', log_level='WARNING')  # becomes the current logger
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(sys.stderr)
    logger.addFilter(_DropFrozenWarnings())


def fmt_ratio(value: Optional[float]) -> str:
    return '-' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.2f}x'


def print_table(rows: List[dict], header: str) -> None:
    cols = ('check', 'fp32 time', 'AMP time', 'fp32 peak mem', 'AMP peak mem', 'status')
    cells = [[r['check'], fmt_ratio(r.get('fp32_time')), fmt_ratio(r.get('amp_time')),
              fmt_ratio(r.get('fp32_mem')), fmt_ratio(r.get('amp_mem')), r['status']] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols[:-1])]
    line = lambda vals: '  '.join(v.ljust(w) for v, w in zip(vals, widths)) + '  ' + vals[-1]  # noqa: E731
    print(header)
    print(line(list(cols)))
    print('  '.join('-' * w for w in widths) + '  ' + '-' * 6)
    for row in cells:
        print(line(row))


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda',
                        help='cuda: ResNet-50, 224 px, 64 images per GPU; cpu: the same checks tiny (default: cuda)')
    parser.add_argument('--pairs', nargs='+', choices=sorted(PAIRS), default=list(PAIRS),
                        help='pairs to measure and algorithms to sync-check (default: all)')
    parser.add_argument('--checks', nargs='+', choices=CHECKS, default=list(CHECKS),
                        help='checks to run (default: all)')
    parser.add_argument('--batch', type=int, help='images per GPU/process (default: 64 on cuda, 2 on cpu)')
    parser.add_argument('--warmup', type=int, help='untimed steps per model (default: 3 on cuda, 1 on cpu)')
    parser.add_argument('--repeats', type=int, help='timed steps per model (default: 10 on cuda, 2 on cpu)')
    parser.add_argument('--gpus', type=int, help='DDP processes (default: every visible GPU; 2 on cpu)')
    parser.add_argument('--json', help='also write the rows to this file')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the checks, print the table; 0 when every check passed or was skipped, 1 when one failed."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('gpu_check: --device cuda, but torch sees no CUDA device '
              f'(torch {torch.__version__}, CUDA build {torch.version.cuda}); '
              'run with --device cpu for the tiny CPU check', file=sys.stderr)
        return 2
    scale = dict(GPU_SCALE if device.type == 'cuda' else CPU_SCALE)
    for key in ('batch', 'warmup', 'repeats'):
        if getattr(args, key) is not None:
            scale[key] = getattr(args, key)
    world = args.gpus if args.gpus is not None else (torch.cuda.device_count() if device.type == 'cuda' else 2)

    _setup_scope()
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('max_iters', 10**6)  # CosineEMA schedules
    torch.manual_seed(0)
    rows: List[dict] = []

    def run(check: str, fn: Callable[[], Any], row: dict) -> None:
        log(f'{check} ...')
        start, cpu = time.perf_counter(), time.process_time()
        try:
            result = fn()
            row['status'] = result if isinstance(result, str) else 'ok'
        except CheckFailed as e:
            row['status'] = f'FAIL: {e}'
        except Exception as e:  # an unexpected error is a failed check too; the table still prints
            row['status'] = f'FAIL: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'
            traceback.print_exc(file=sys.stderr)
        log(f'{check}: {row["status"]} ({time.perf_counter() - start:.1f} s, CPU {time.process_time() - cpu:.1f} s)')
        rows.append(dict(check=check, **row))

    if 'pairs' in args.checks:
        for pair in args.pairs:
            alg, base, _ = PAIRS[pair]
            row: dict = {}

            def measure(pair: str = pair, row: dict = row) -> str:
                for amp in (False, True):
                    res = run_pair(pair, scale, device, amp)
                    key = 'amp' if amp else 'fp32'
                    row[f'{key}_time'], row[f'{key}_mem'] = res['time'], res['mem']
                    row[f'{key}_detail'] = res
                return 'ok: losses finite'

            run(f'pair {alg} / {base}', measure, row)
    if 'sync' in args.checks:
        for pair in args.pairs:
            check = f'sync-free step {PAIRS[pair][0]}'
            if device.type != 'cuda':
                rows.append(dict(check=check, status='skip: torch.cuda.set_sync_debug_mode needs CUDA '
                                 '(a CPU step has no host syncs to detect)'))
                log(f'{check}: {rows[-1]["status"]}')
                continue
            run(check, lambda pair=pair: check_sync_free(pair, scale, device), {})
    if 'mmcv' in args.checks:
        run('mmcv op', lambda: check_mmcv_op(device), {})
    if 'ddp' in args.checks:
        run('DDP DetCon-B', lambda: check_ddp(scale, device, world), {})

    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    header = (f'gpu_check: {name} x {world if "ddp" in args.checks else 1}, torch {torch.__version__}, '
              f'{scale["backbone"]}, {scale["size"]} px, batch {scale["batch"]}, ratios algorithm / baseline '
              f'(median of {scale["repeats"]} steps after {scale["warmup"]} warm-up)')
    print_table(rows, header)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(header=header, scale=scale, rows=rows), f, indent=2)
    failed = [r['check'] for r in rows if r['status'].startswith('FAIL')]
    if failed:
        print(f'gpu_check: {len(failed)} check(s) failed: {", ".join(failed)}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
