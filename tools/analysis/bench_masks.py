"""Benchmark offline FH mask generation (one process, one thread) and extrapolate to ImageNet-1k.

    python tools/analysis/bench_masks.py [--repeats 3] [--json bench_masks.json]

Methods: skimage ``felzenszwalb`` at DetCon's parameters (the official masks), skimage on a copy whose
short side is S px (``--short-side S`` of tools/masks/generate_masks.py), and OpenCV's ``ximgproc``
GraphSegmentation when importable. Images: the photographs shipped with scikit-image at native size,
the same photographs (plus two 75 % crops of each) resized to 500x375, ImageNet's median size, which
is the case used for the extrapolation, and synthetic shapes images when
``mmdetcon.datasets.shapes`` is installed. Agreement is the adjusted Rand index (ARI) with the
official masks of the same image; ``jpeg-q90`` is the ARI between the official masks of an image
and of its JPEG (quality 90) re-encoding, i.e. how much FH moves under decoder-level noise.
Timings are CPU seconds of this process (``time.process_time``), so they are per core.
"""
import argparse
import io
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils import masks_io  # noqa: E402

IMAGENET_TRAIN = 1_281_167
IMAGENET_SIZE = (375, 500)  # (h, w): the median ImageNet-1k train image
TARGET_CORE_HOURS = 30.0
TARGET_GB = 5.0


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """ARI of two labelings of the same pixels (Hubert & Arabie), from the contingency table.

    1 for identical partitions (whatever the ids), about 0 for independent ones. When both are a
    single segment the partitions are identical and the ARI is 1.
    """
    a = np.unique(np.asarray(a).ravel(), return_inverse=True)[1].astype(np.int64)
    b = np.unique(np.asarray(b).ravel(), return_inverse=True)[1].astype(np.int64)
    if a.size != b.size:
        raise ValueError(f'labelings differ in size: {a.size} vs {b.size}')
    n = a.size
    table = np.bincount(a * (int(b.max()) + 1) + b).astype(np.float64)  # flattened contingency

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    index = pairs(table)
    rows, cols = pairs(np.bincount(a).astype(np.float64)), pairs(np.bincount(b).astype(np.float64))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


# ------------------------------------------------------------------------------------ images
def photographs() -> Dict[str, np.ndarray]:
    """Natural photographs that ship with scikit-image (RGB uint8, native size)."""
    from skimage import data
    images = {}
    for name in ('astronaut', 'coffee', 'chelsea', 'rocket', 'stereo_motorcycle', 'camera'):
        try:
            img = getattr(data, name)()
        except Exception as exc:  # noqa: BLE001 - a missing optional file only shrinks the set
            print(f'note: skimage.data.{name} unavailable ({type(exc).__name__}), skipped')
            continue
        if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
            img = img[0]
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        images[name.replace('stereo_', '')] = np.ascontiguousarray(img[..., :3])
    return images


def imagenet_sized(photos: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Each photograph and two 75 % crops of it, resized (area) to 500x375."""
    out = {}
    h_t, w_t = IMAGENET_SIZE
    for name, img in photos.items():
        h, w = img.shape[:2]
        crops = {'': img, '-tl': img[:int(h * .75), :int(w * .75)], '-br': img[h // 4:, w // 4:]}
        for tag, crop in crops.items():
            out[name + tag] = cv2.resize(crop, (w_t, h_t), interpolation=cv2.INTER_AREA)
    return out


def shapes_images(num: int = 6) -> Optional[Dict[str, np.ndarray]]:
    try:
        from mmdetcon.datasets.shapes import make_shapes
    except ImportError:
        print('note: mmdetcon.datasets.shapes not available: shapes images skipped')
        return None
    from PIL import Image
    with tempfile.TemporaryDirectory() as root:
        make_shapes(root, num, image_size=256, seed=0, split='train')
        folder = osp.join(root, 'train', 'images')
        names = sorted(os.listdir(folder))[:num]
        return {f'shapes-{osp.splitext(n)[0]}': np.asarray(Image.open(osp.join(folder, n)).convert('RGB'))
                for n in names}


# ------------------------------------------------------------------------------------ timing
def cpu_time(fn: Callable[[], object], repeats: int) -> Tuple[object, float]:
    """Result of ``fn`` and its median CPU time over ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append(time.process_time() - start)
    return out, float(np.median(times))


def methods(with_opencv: bool) -> List[Tuple[str, Dict]]:
    out = [('skimage (official)', dict(backend='skimage', short_side=None))]
    for side in (320, 256, 224, 192):
        out.append((f'skimage short-side {side}', dict(backend='skimage', short_side=side)))
    if with_opencv:
        out.append(('opencv', dict(backend='opencv', short_side=None)))
        out.append(('opencv short-side 256', dict(backend='opencv', short_side=256)))
    return out


def bench_set(images: Dict[str, np.ndarray], meths: List[Tuple[str, Dict]], repeats: int,
              end_to_end: bool) -> Dict:
    """Per method: FH CPU time, segments, PNG bytes and ARI with the official masks, per image."""
    rows = {name: dict(fh_s=[], segments=[], png_bytes=[], ari=[]) for name, _ in meths}
    rows['jpeg-q90'] = dict(ari=[])
    io_times = dict(decode_s=[], encode_s=[])
    with tempfile.TemporaryDirectory() as tmp:
        for img_name, rgb in images.items():
            official = None
            for name, kw in meths:
                ids, sec = cpu_time(lambda: masks_io.fh_segment(rgb, **kw), repeats)
                if official is None:
                    official = ids
                rows[name]['fh_s'].append(sec)
                rows[name]['segments'].append(int(ids.max()) + 1)
                rows[name]['png_bytes'].append(len(masks_io.encode_id_map(ids)))
                rows[name]['ari'].append(adjusted_rand_index(official, ids))
            ok, jpg = cv2.imencode('.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            noisy = np.ascontiguousarray(cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1])
            rows['jpeg-q90']['ari'].append(adjusted_rand_index(official, masks_io.fh_segment(noisy)))
            if end_to_end:  # decoding the JPEG and writing the PNG, as the generation tool does
                path = osp.join(tmp, 'img.jpg')
                with open(path, 'wb') as f:
                    f.write(jpg.tobytes())
                _, sec = cpu_time(lambda: masks_io.read_rgb(path), repeats)
                io_times['decode_s'].append(sec)
                _, sec = cpu_time(lambda: masks_io.save_id_map(osp.join(tmp, 'm.png'), official), repeats)
                io_times['encode_s'].append(sec)
    result = {}
    for name, r in rows.items():
        entry = dict(ari_median=float(np.median(r['ari'])), ari_mean=float(np.mean(r['ari'])),
                     ari_min=float(np.min(r['ari'])), ari_max=float(np.max(r['ari'])))
        if name != 'jpeg-q90':
            fh = float(np.median(r['fh_s']))
            entry.update(fh_ms=1e3 * fh, images_per_s_core=1.0 / fh,
                         segments_median=float(np.median(r['segments'])),
                         segments_range=[int(min(r['segments'])), int(max(r['segments']))],
                         png_bytes_mean=float(np.mean(r['png_bytes'])))
        result[name] = entry
    if end_to_end:
        result['_io'] = dict(decode_ms=1e3 * float(np.median(io_times['decode_s'])),
                             encode_ms=1e3 * float(np.median(io_times['encode_s'])))
    return result


def png_levels(maps: List[np.ndarray], repeats: int) -> List[Dict]:
    """Bytes and encoding time of several PNG settings on the same id maps."""
    from PIL import Image
    settings: List[Tuple[str, Callable[[np.ndarray], bytes]]] = [
        ('OpenCV default (level 3, adaptive filters)', lambda m: cv2.imencode('.png', m)[1].tobytes())]
    for level in (1, 3, 6, 9):
        settings.append((f'level {level}, no filter' + (' (default)' if level == masks_io.PNG_COMPRESSION
                                                         else ''),
                         lambda m, lv=level: masks_io.encode_id_map(m, compression=lv)))

    def pil(m: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(m).save(buf, format='PNG', optimize=True)
        return buf.getvalue()

    settings.append(('PIL optimize=True', pil))
    out = []
    for name, enc in settings:
        sizes, times = [], []
        for m in maps:
            data, sec = cpu_time(lambda: enc(m), repeats)
            sizes.append(len(data))
            times.append(sec)
        out.append(dict(setting=name, bytes_mean=float(np.mean(sizes)),
                        encode_ms=1e3 * float(np.median(times))))
    return out


# ------------------------------------------------------------------------------------ report
def extrapolate(res: Dict, calibrate_ms: Optional[float] = None) -> Dict:
    """ImageNet-1k train cost per method: decode + FH + PNG per image, times 1,281,167.

    ``calibrate_ms``: the official skimage FH time of one 500x375 image on the target machine; every
    method's time is then scaled by the same factor (the ratios measured here are kept).
    """
    io_ms = res['_io']['decode_ms'] + res['_io']['encode_ms']
    factor = 1.0 if calibrate_ms is None else calibrate_ms / res['skimage (official)']['fh_ms']
    official = res['skimage (official)']['fh_ms'] + io_ms
    out = {}
    for name, r in res.items():
        if name.startswith('_') or name == 'jpeg-q90':
            continue
        per_image = (r['fh_ms'] + io_ms) * factor
        out[name] = dict(ms_per_image=per_image, relative_to_official=(r['fh_ms'] + io_ms) / official,
                         core_hours=IMAGENET_TRAIN * per_image / 1e3 / 3600,
                         gb=IMAGENET_TRAIN * r['png_bytes_mean'] / 1e9)
        out[name]['meets_targets'] = (out[name]['core_hours'] <= TARGET_CORE_HOURS
                                      and out[name]['gb'] <= TARGET_GB)
    return out


def print_table(title: str, res: Dict) -> None:
    print(f'\n## {title}')
    print(f"{'method':28s} {'ms/img':>8s} {'img/s/core':>10s} {'segments':>12s} {'PNG KB':>7s} "
          f"{'ARI vs official: median (min-max)':>34s}")
    for name, r in res.items():
        if name.startswith('_'):
            continue
        ari = f"{r['ari_median']:.2f} ({r['ari_min']:.2f}-{r['ari_max']:.2f})"
        if name == 'jpeg-q90':
            print(f"{'official on JPEG q90 copy':28s} {'':>8s} {'':>10s} {'':>12s} {'':>7s} {ari:>34s}")
            continue
        seg = f"{r['segments_median']:g} [{r['segments_range'][0]}-{r['segments_range'][1]}]"
        print(f"{name:28s} {r['fh_ms']:8.1f} {r['images_per_s_core']:10.2f} {seg:>12s} "
              f"{r['png_bytes_mean'] / 1e3:7.2f} {ari:>34s}")
    if '_io' in res:
        print(f"(JPEG decode {res['_io']['decode_ms']:.1f} ms, "
              f"PNG encode+write {res['_io']['encode_ms']:.1f} ms)")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=3, help='timed calls per image and method (median)')
    p.add_argument('--no-native', action='store_true', help='skip the native-size photographs')
    p.add_argument('--json', help='write all figures to this JSON file')
    p.add_argument('--calibrate-ms', type=float, default=None,
                   help='official skimage FH ms per 500x375 image on the machine to plan for (e.g. '
                   'measured on an idle core); adds an extrapolation scaled by it')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    cv2.setNumThreads(1)
    with_cv = masks_io.opencv_fh_available()
    if not with_cv:
        print('note: cv2.ximgproc missing: opencv backend skipped '
              '(pip install opencv-contrib-python-headless, see docs/masks.md)')
    meths = methods(with_cv)
    photos = photographs()
    load = list(os.getloadavg()) if hasattr(os, 'getloadavg') else None
    report: Dict = dict(machine=dict(cpu=_cpu_name(), python=platform.python_version(), load_average=load),
                        versions=dict(numpy=np.__version__, opencv=cv2.__version__,
                                      skimage=__import__('skimage').__version__),
                        repeats=args.repeats)
    small = imagenet_sized(photos)
    report['imagenet_500x375'] = res = bench_set(small, meths, args.repeats, end_to_end=True)
    print_table(f'{len(small)} photographs and crops at 500x375 (ImageNet median size), one core', res)
    if not args.no_native:
        report['native'] = bench_set(photos, meths, args.repeats, end_to_end=False)
        sizes = ', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in photos.items())
        print_table(f'photographs at native size ({sizes})', report['native'])
    shapes = shapes_images()
    if shapes:
        report['shapes'] = bench_set(shapes, meths, args.repeats, end_to_end=False)
        print_table(f'{len(shapes)} synthetic shapes images at 256x256', report['shapes'])
    official = [masks_io.fh_segment(img) for img in small.values()]
    report['png'] = png_levels([m.astype(np.uint8) for m in official], args.repeats)
    print('\n## PNG settings on the official 500x375 masks')
    for row in report['png']:
        print(f"{row['setting']:44s} {row['bytes_mean'] / 1e3:6.2f} KB  {row['encode_ms']:6.2f} ms")
    report['imagenet_extrapolation'] = ext = extrapolate(res)
    runs = [('measured here', ext)]
    if args.calibrate_ms:
        report['imagenet_extrapolation_calibrated'] = cal = extrapolate(res, args.calibrate_ms)
        report['calibrate_ms'] = args.calibrate_ms
        runs.append((f'official FH calibrated to {args.calibrate_ms:g} ms/image', cal))
    for label, table in runs:
        print(f'\n## ImageNet-1k train ({IMAGENET_TRAIN:,} images at 500x375), decode + FH + PNG, '
              f'one core, {label}')
        for name, r in table.items():
            flag = 'meets' if r['meets_targets'] else 'misses'
            print(f"{name:28s} {r['ms_per_image']:7.1f} ms/img ({r['relative_to_official']:4.2f}x)  "
                  f"{r['core_hours']:6.1f} core-hours  {r['gb']:5.2f} GB  "
                  f"({flag} <= {TARGET_CORE_HOURS:g} core-h, <= {TARGET_GB:g} GB)")
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)
        print(f'\nwritten {args.json}')
    return report


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


if __name__ == '__main__':
    main()
