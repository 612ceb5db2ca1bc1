"""CPU cost of the DetCon data pipeline per image (one process, one thread).

    python tools/analysis/bench_detcon_data.py [--samples 64] [--json out.json]

Cases: the shapes config (``configs/_base_/datasets/shapes_detcon.py``, 128 px images, 96 px views)
with FH computed online (no precomputed maps) and with precomputed maps, and the ImageNet config
(224 px views) on 500x375 images (ImageNet's median size, made from scikit-image's photographs)
with precomputed FH maps. Each case reports CPU ms per sample for the whole pipeline (loading, mask
source, two views, packing) and for the mask source alone. Divide a GPU's images/s by
1000 / (ms per sample) to get the dataloader workers it needs.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import mmdetcon  # noqa: E402,F401
from mmdetcon.utils import masks_io  # noqa: E402


def _cpu_ms(fn, n: int) -> float:
    start = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - start) / n * 1000


def _case(cfg_path: str, data_root: str, img_root: str, mask_root: str, samples: int,
          dataset_overrides: Dict) -> Dict:
    from mmengine.config import Config
    from mmpretrain.registry import DATASETS, TRANSFORMS
    cfg = Config.fromfile(cfg_path)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = data_root
    ds_cfg.update(dataset_overrides)
    pipeline = ds_cfg.pipeline
    load = pipeline[1]
    if load.get('fallback'):
        load.mask_root, load.img_root = mask_root, img_root
    ds = DATASETS.build(ds_cfg)
    n = min(samples, len(ds))
    ds[0]  # warm-up (imports, first-call warnings)
    total = _cpu_ms(lambda i: ds[i % len(ds)], n)
    loader = TRANSFORMS.build(pipeline[0])
    source = TRANSFORMS.build(load)
    decoded = [loader(dict(ds.get_data_info(i))) for i in range(n)]
    mask = _cpu_ms(lambda i: source(dict(decoded[i])), n)
    return dict(samples=n, pipeline_ms=round(total, 1), mask_source_ms=round(mask, 1))


def imagenet_like(root: str, num: int) -> None:
    """``num`` 500x375 JPEGs from scikit-image's photographs, a list file and their FH maps."""
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    lines = []
    for i in range(num):
        img = cv2.resize(photos[i % len(photos)], (500, 375), interpolation=cv2.INTER_AREA)
        img = np.roll(img, 37 * i, axis=1)  # distinct images
        rel = f'n{i % 3:08d}/img_{i}.JPEG'
        path = osp.join(root, 'train', rel)
        masks_io.save_id_map(osp.join(root, 'masks_fh', osp.splitext(rel)[0] + '.png'),
                             masks_io.fh_segment(img))
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(path, img[..., ::-1])
        lines.append(f'{rel} {i % 3}')
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    with open(osp.join(root, 'meta', 'train.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--samples', type=int, default=64, help='samples timed per case')
    p.add_argument('--json', help='write the figures to this JSON file')
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from mmengine.registry import DefaultScope
    res = {}
    with DefaultScope.overwrite_default_scope('mmpretrain'), tempfile.TemporaryDirectory() as tmp:
        shapes_cfg = osp.join(ROOT, 'configs/_base_/datasets/shapes_detcon.py')
        shapes = osp.join(tmp, 'shapes')
        over = dict(num_images=args.samples)
        img_root = osp.join(shapes, 'train', 'images')
        res['shapes_online_fh'] = _case(shapes_cfg, shapes, img_root, osp.join(shapes, 'none'),
                                        args.samples, over)
        from mmengine.config import Config
        fh = dict(Config.fromfile(shapes_cfg).fh_cfg)
        for i in range(args.samples):
            name = f'{i:06d}'
            rgb = cv2.imread(osp.join(img_root, name + '.png'))[..., ::-1].copy()
            masks_io.save_id_map(osp.join(shapes, 'masks', name + '.png'),
                                 masks_io.fh_segment(rgb, **fh))
        res['shapes_precomputed'] = _case(shapes_cfg, shapes, img_root, osp.join(shapes, 'masks'),
                                          args.samples, over)
        inet = osp.join(tmp, 'imagenet')
        imagenet_like(inet, min(args.samples, 16))
        res['imagenet_500x375_precomputed'] = _case(
            osp.join(ROOT, 'configs/_base_/datasets/imagenet_detcon.py'), inet, '', '',
            args.samples, {})
    for name, r in res.items():
        print(f'{name:32s} pipeline {r["pipeline_ms"]:7.1f} ms/sample   mask source '
              f'{r["mask_source_ms"]:6.1f} ms   ({r["samples"]} samples)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == '__main__':
    main()
