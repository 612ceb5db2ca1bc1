r"""Precompute DetCon's Felzenszwalb-Huttenlocher masks: one id-map PNG per image, offline.

    python tools/masks/generate_masks.py --img-root data/imagenet/train --out-root data/imagenet/fh_masks \
        --ann-file data/imagenet/meta/train.txt --workers 16 --shard 0/8

Each image ``IMG_ROOT/rel/x.JPEG`` gives ``OUT_ROOT/rel/x.png`` (uint8; uint16 when there are more than 256 segments).
Runs are resumable and shardable (``--shard I/N`` for slurm arrays); every mask is written atomically.
A corrupt image is listed in the summary and skipped; the exit code stays 0 unless ``--strict``. So is a
list entry that leaves ``--img-root`` (absolute, ``..``) or whose mask would land outside ``--out-root``
(symlinks included): nothing is ever read from outside the image root or written outside the output root.
``--verify`` only checks existing masks (present, decodable, same size as the image) and exits 1 on
any problem. See docs/masks.md.
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils import masks_io  # noqa: E402
from mmdetcon.utils.mask_workers import (PathEscapeError, confined_paths, execute,  # noqa: E402
                                         mask_relpath)
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
CONFIG_NAME = 'masks_config.json'
_TMP_RE = re.compile(r'^(?P<final>.+)\.tmp-\d+$')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--img-root', required=True, help='root folder of the images')
    p.add_argument('--out-root', required=True, help='root folder of the masks (mirrors --img-root)')
    p.add_argument('--ann-file', help='list of images, one "rel/path.JPEG [label]" per line, relative '
                   'to --img-root (default: every jpg/jpeg/png/bmp/webp under --img-root)')
    p.add_argument('--workers', type=int, default=None,
                   help='worker processes (default: the CPUs this process may use; 0 = in-process)')
    p.add_argument('--shard', default='0/1', help='I/N: process only images whose index in the sorted '
                   'list is I modulo N (slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)')
    p.add_argument('--backend', choices=masks_io.BACKENDS, default='skimage',
                   help="FH implementation; 'skimage' is DetCon's, 'opencv' is faster but different")
    p.add_argument('--scale', type=float, default=masks_io.FH_SCALE, help='FH scale (k)')
    p.add_argument('--sigma', type=float, default=masks_io.FH_SIGMA, help='FH Gaussian pre-smoothing')
    p.add_argument('--min-size', type=int, default=masks_io.FH_MIN_SIZE, help='FH minimum segment size')
    p.add_argument('--short-side', type=int, default=None,
                   help='segment a copy whose short side is this many px (min-size scaled by the area '
                   'ratio), store the ids nearest-upsampled to the image size; faster, approximate. '
                   'Default: off (exact official masks)')
    p.add_argument('--png-compression', type=int, default=masks_io.PNG_COMPRESSION, choices=range(10),
                   metavar='0-9', help=f'zlib level (default {masks_io.PNG_COMPRESSION})')
    p.add_argument('--ignore-orientation', action='store_true',
                   help='ignore EXIF orientation (default: apply it, as OpenCV/mmcv image loading does)')
    p.add_argument('--verify', action='store_true',
                   help='do not generate: check every expected mask exists, decodes and has its '
                   "image's size; exit 1 on any problem")
    p.add_argument('--strict', action='store_true', help='exit 1 when any image failed')
    p.add_argument('--summary', help='summary JSON path (default: OUT_ROOT/summary[.shardI-of-N].json, '
                   'or verify[...].json with --verify)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--debug', action='store_true', help='full traceback on errors')
    return p.parse_args(argv)


def parse_shard(text: str) -> Tuple[int, int]:
    """``'I/N'`` -> ``(I, N)`` with ``0 <= I < N``."""
    match = re.fullmatch(r'\s*(\d+)\s*/\s*(\d+)\s*', text or '')
    if not match:
        raise UserError(f"--shard must look like I/N (e.g. 0/8), got '{text}'")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise UserError(f"--shard {text}: need N >= 1 and 0 <= I < N")
    return index, count


def list_images(img_root: str, ann_file: Optional[str] = None,
                exclude: Optional[str] = None) -> List[str]:
    """Sorted, de-duplicated image paths relative to ``img_root`` (POSIX separators).

    The scan skips the folder ``exclude`` (the masks, when they are stored under ``img_root``).
    """
    if ann_file is not None:
        if not osp.isfile(ann_file):
            raise UserError(f'--ann-file not found: {ann_file}')
        rels = set()
        with open(ann_file, encoding='utf-8') as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                parts = line.rsplit(maxsplit=1)
                # "rel/path.JPEG 3": drop a trailing integer label; paths may contain spaces.
                rel = parts[0] if len(parts) == 2 and re.fullmatch(r'-?\d+', parts[1]) else line
                rels.add(rel.replace(os.sep, '/'))  # entries leaving --img-root fail in the job
        return sorted(rels)
    rels = []
    skip = osp.realpath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(img_root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if osp.realpath(osp.join(dirpath, d)) != skip)
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                rels.append(osp.relpath(osp.join(dirpath, name), img_root).replace(os.sep, '/'))
    return sorted(rels)


def scan_outputs(out_root: str) -> Tuple[Set[str], List[str]]:
    """Existing final masks (relative paths) and temporary files (absolute) under ``out_root``."""
    finals, tmps = set(), []
    for dirpath, _, filenames in os.walk(out_root):
        for name in filenames:
            path = osp.join(dirpath, name)
            if _TMP_RE.match(name):
                tmps.append(path)
            elif name.endswith('.png'):
                finals.add(osp.relpath(path, out_root).replace(os.sep, '/'))
    return finals, tmps


# -------------------------------------------------------------------------------------- main
def _check_config(out_root: str, config: Dict) -> None:
    """Refuse to resume into a folder made with other FH settings; record them otherwise."""
    path = osp.join(out_root, CONFIG_NAME)
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
        if diff:
            pretty = ', '.join(f'{k}: {a!r} there vs {b!r} now' for k, (a, b) in diff.items())
            raise UserError(f'{path} records other mask settings ({pretty}); '
                            'use another --out-root or the same settings')
        return
    os.makedirs(out_root, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, path)


def _versions() -> Dict[str, str]:
    import cv2
    import PIL
    import skimage
    return dict(skimage=skimage.__version__, opencv=cv2.__version__, pillow=PIL.__version__,
                numpy=np.__version__)


def _segment_stats(counts: List[int]) -> Dict:
    if not counts:
        return dict(histogram={})
    values, freq = np.unique(np.asarray(counts), return_counts=True)
    return dict(histogram={str(int(v)): int(c) for v, c in zip(values, freq)},
                min=int(values[0]), median=float(np.median(counts)), mean=round(float(np.mean(counts)), 3),
                max=int(values[-1]))


def main(args: argparse.Namespace) -> int:
    start = time.time()
    index, count = parse_shard(args.shard)
    if not osp.isdir(args.img_root):
        raise UserError(f'--img-root is not a directory: {args.img_root}')
    if args.workers is not None and args.workers < 0:
        raise UserError(f'--workers must be >= 0, got {args.workers}')
    if args.short_side is not None and args.short_side < 1:
        raise UserError(f'--short-side must be a positive number of pixels, got {args.short_side}')
    if args.min_size < 1 or args.scale <= 0 or args.sigma < 0:
        raise UserError('need --min-size >= 1, --scale > 0 and --sigma >= 0')
    if args.backend == 'opencv' and not masks_io.opencv_fh_available() and not args.verify:
        raise UserError(masks_io._OPENCV_HINT)
    workers = args.workers
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    shard_tag = '' if count == 1 else f'.shard{index}-of-{count}'
    summary_path = args.summary or osp.join(
        args.out_root, ('verify' if args.verify else 'summary') + shard_tag + '.json')

    rels = list_images(args.img_root, args.ann_file, exclude=args.out_root)
    outputs: Dict[str, str] = {}
    real_img, real_out = osp.realpath(args.img_root), osp.realpath(args.out_root)
    for rel in rels:
        try:
            confined_paths(rel, args.img_root, args.out_root)
        except PathEscapeError:
            continue  # refused by the job and listed as failed
        out_rel = mask_relpath(rel)
        if out_rel in outputs:
            raise UserError(f"images '{outputs[out_rel]}' and '{rel}' would share the mask {out_rel}")
        outputs[out_rel] = rel
        if osp.normpath(osp.join(real_out, out_rel)) == osp.normpath(osp.join(real_img, rel)):
            raise UserError(f'the mask of {rel} would overwrite the image: choose another --out-root')
    mine = [rel for i, rel in enumerate(rels) if i % count == index]
    if not rels:
        print(f'warning: no images found under {args.img_root}'
              + (f' listed in {args.ann_file}' if args.ann_file else ''), file=sys.stderr)

    config = dict(backend=args.backend, scale=args.scale, sigma=args.sigma, min_size=args.min_size,
                  short_side=args.short_side, exif_orientation=not args.ignore_orientation)
    params = dict(config, png_compression=args.png_compression, verify=args.verify)
    throttle = float(os.environ.get('MMDETCON_FH_THROTTLE_S', '0') or 0)
    if throttle:  # sleep before each image (lets tests interrupt a run deterministically)
        params['throttle_s'] = throttle
    tasks = [(rel, args.img_root, args.out_root) for rel in mine]
    summary: Dict = dict(mode='verify' if args.verify else 'generate', img_root=args.img_root,
                         out_root=args.out_root, ann_file=args.ann_file, shard=f'{index}/{count}',
                         workers=workers, parameters=params, versions=_versions(),
                         images_listed=len(rels), images_total=len(mine))
    progress = not args.no_progress

    if args.verify:
        problems = []
        for res in execute(tasks, params, workers, progress, 'verify'):
            problem = res.get('problem') or res.get('error')
            if problem:
                problems.append(dict(path=res['rel'], problem=problem))
        problems.sort(key=lambda d: d['path'])
        summary.update(ok=len(tasks) - len(problems), problems=problems)
        code = 1 if problems else 0
    else:
        _check_config(args.out_root, config)
        finals, tmps = scan_outputs(args.out_root)
        mine_outs = {mask_relpath(rel) for rel in mine}
        stale = [t for t in tmps if osp.relpath(_TMP_RE.match(t).group('final'), args.out_root)
                 .replace(os.sep, '/') in mine_outs]
        for path in stale:  # left by a killed run of this shard
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        todo = [t for t in tasks if mask_relpath(t[0]) not in finals]
        failures, segments, uint16_paths, nbytes = [], [], [], 0
        for res in execute(todo, params, workers, progress, 'FH masks'):
            if 'error' in res:
                failures.append(dict(path=res['rel'], error=res['error']))
                continue
            segments.append(res['segments'])
            nbytes += res['bytes']
            if res['uint16']:
                uint16_paths.append(res['rel'])
        failures.sort(key=lambda d: d['path'])
        processed = len(segments)
        wall = time.time() - start
        summary.update(processed=processed, skipped_existing=len(tasks) - len(todo),
                       failed=len(failures), failures=failures, stale_tmp_removed=len(stale),
                       segments=_segment_stats(segments), uint16_maps=len(uint16_paths),
                       uint16_paths=sorted(uint16_paths)[:1000], bytes_written=nbytes,
                       bytes_per_mask=round(nbytes / processed, 1) if processed else None,
                       images_per_s=round(processed / wall, 3) if wall > 0 else None)
        if uint16_paths:
            print(f'warning: {len(uint16_paths)} masks have more than 256 segments and were stored as '
                  'uint16 (the official uint8 storage would wrap their ids)', file=sys.stderr)
        code = 1 if (failures and args.strict) else 0
    summary['wall_time_s'] = round(time.time() - start, 3)
    _write_summary(summary_path, summary)
    _print_summary(summary, summary_path)
    return code


def _write_summary(path: str, summary: Dict) -> None:
    directory = osp.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, path)


def _human(nbytes: int) -> str:
    for unit in ('B', 'KB', 'MB', 'GB'):
        if nbytes < 1000 or unit == 'GB':
            return f'{nbytes:.0f} {unit}' if unit == 'B' else f'{nbytes:.2f} {unit}'
        nbytes /= 1000
    return ''  # pragma: no cover


def _print_summary(s: Dict, path: str) -> None:
    if s['mode'] == 'verify':
        print(f"verified {s['images_total']} masks (shard {s['shard']}): {s['ok']} ok, "
              f"{len(s['problems'])} problems")
        for item in s['problems'][:20]:
            print(f"  {item['path']}: {item['problem']}")
    else:
        seg = s['segments']
        print(f"FH masks (shard {s['shard']}, {s['parameters']['backend']}): {s['images_total']} images, "
              f"{s['processed']} processed, {s['skipped_existing']} already done, {s['failed']} failed; "
              f"{_human(s['bytes_written'])} written, {s['uint16_maps']} uint16 maps, "
              f"{s['wall_time_s']:.1f} s ({s['images_per_s'] or 0:.2f} img/s)")
        if seg.get('histogram'):
            print(f"  segments per image: min {seg['min']}, median {seg['median']:g}, max {seg['max']}")
        for item in s['failures'][:20]:
            print(f"  failed {item['path']}: {item['error']}")
        if len(s['failures']) > 20:
            print(f"  ... {len(s['failures']) - 20} more failures")
    print(f'summary: {path}')


def cli(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    code: List[int] = [0]

    def _main(a: argparse.Namespace) -> None:
        code[0] = main(a)

    run_cli(_main, args)
    sys.exit(code[0])


if __name__ == '__main__':
    cli()
