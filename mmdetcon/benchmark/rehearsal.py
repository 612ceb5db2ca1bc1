"""Rehearsal of the real-scale plan (``--profile in1k-coco --rehearse``) on CPU, at toy size.

Builds a tiny ImageNet-layout tree (``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``, ``meta/{train,val}.txt``,
the files mmpretrain's ``ImageNet`` and mmdetcon's ``ImageMaskDataset`` read) and a tiny COCO-layout tree
(``train2017/``, ``val2017/``, ``annotations/instances_{train,val}2017.json`` with polygon masks and COCO's 80
category names), generates the DetCon rows' Felzenszwalb masks with ``tools/masks/generate_masks.py`` (its
documented command), then writes and launches the same plan as ``--launch``
(:func:`mmdetcon.benchmark.gpu_plan.write_plan` / :func:`~mmdetcon.benchmark.gpu_plan.launch_plan`): every
method's real in1k config through ``tools/dist_train.sh`` on 2 CPU processes (gloo), ``extract_backbone.py``,
COCO Mask R-CNN R50-FPN and ImageNet linear evaluation with their evaluators. Only data roots and sizes change
(``--cfg-options`` per step kind: epochs/iterations, image scale, batch, workers, classes, RoI counts), plus one
evaluation setting: the detector's score threshold is 0, since a head trained for two iterations scores every
class near 1/81, below the default 0.05, and would leave the COCO metric nothing to score.

The scenes are the project's shapes renders (:func:`mmdetcon.datasets.shapes.render_image`); their numbers
mean nothing beyond "every step ran and its evaluator produced a finite value".
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from mmdetcon.datasets.shapes import render_image
from .profiles import ROOT

DETCON_METHODS = ('detcon-b', 'detcon-s')
# COCO's 80 category names (mmdet's CocoDataset classes) and their json ids (1..90 with COCO's gaps).
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


def _write_jpeg(path: str, rgb: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f'could not write {path}')


def make_imagenet_tree(root: str, num_classes: int = 2, train_per_class: int = 4, val_per_class: int = 2,
                       size: Sequence[int] = (80, 64), seed: int = 0) -> str:
    """Write ``root/{train,val}/<class>/<name>.JPEG`` and ``root/meta/{train,val}.txt`` ("rel label" lines).

    ``size`` is (width, height): a shapes scene rendered at the larger side, cropped to the image's aspect.
    Class ``k`` is ImageNet's ``n<k:08d>`` folder name pattern; labels are ``0..num_classes-1``.
    """
    width, height = int(size[0]), int(size[1])
    for split, per_class in (('train', train_per_class), ('val', val_per_class)):
        lines = []
        for label in range(num_classes):
            wnid = f'n{label:08d}'
            for i in range(per_class):
                index = label * per_class + i
                img = render_image(seed, f'imagenet-{split}', index, image_size=max(width, height))['img']
                rel = f'{wnid}/{wnid}_{index}.JPEG'
                _write_jpeg(osp.join(root, split, rel), img[:height, :width])
                lines.append(f'{rel} {label}\n')
        os.makedirs(osp.join(root, 'meta'), exist_ok=True)
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return root


def polygon_annotations(instance: np.ndarray, categories: Sequence[int]) -> List[dict]:
    """COCO annotations (no ``id``/``image_id``) of instances ``1..n`` of an id map, as polygons.

    Every outer contour of an instance (an occluded object may fall apart) with at least 3 points is one
    polygon; ``area`` and ``bbox`` are the pixel mask's, as in COCO.
    """
    anns = []
    for k, cat in enumerate(categories, 1):
        mask = (instance == k).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        if not polygons:
            continue
        ys, xs = np.nonzero(mask)
        x0, y0 = float(xs.min()), float(ys.min())
        anns.append(dict(category_id=int(cat), iscrowd=0, area=float(mask.sum()), segmentation=polygons,
                         bbox=[x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]))
    return anns


def make_coco_tree(root: str, train_images: int = 4, val_images: int = 2, image_size: int = 128,
                   seed: int = 0) -> str:
    """Write ``root/{train2017,val2017}/<12-digit id>.jpg`` and ``root/annotations/instances_*2017.json``.

    Shapes scenes; shape class ``c`` (1..8) is annotated as COCO's ``c``-th category, and all 80 categories are
    listed, so mmdet's ``CocoDataset`` reads the file as it reads COCO's.
    """
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    categories = [dict(id=cid, name=name, supercategory='none') for cid, name in zip(COCO_IDS, names)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    image_id = ann_id = 0
    for split, count in (('train2017', train_images), ('val2017', val_images)):
        images, annotations = [], []
        for index in range(count):
            out = render_image(seed, f'coco-{split}', index, image_size=image_size, shape_only=True)
            image_id += 1
            name = f'{image_id:012d}.jpg'
            _write_jpeg(osp.join(root, split, name), out['img'])
            images.append(dict(id=image_id, file_name=name, width=image_size, height=image_size))
            for ann in polygon_annotations(out['instance'], [COCO_IDS[c - 1] for c in out['categories']]):
                ann_id += 1
                annotations.append(dict(ann, id=ann_id, image_id=image_id))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return root


def generate_fh_masks(imagenet_root: str, python: str = sys.executable,
                      env: Optional[Dict[str, str]] = None) -> str:
    """Run ``tools/masks/generate_masks.py`` (the command documented in imagenet_detcon.py); return the mask root."""
    out_root = osp.join(imagenet_root, 'masks_fh')
    cmd = [python, osp.join(ROOT, 'tools', 'masks', 'generate_masks.py'),
           '--img-root', osp.join(imagenet_root, 'train'), '--out-root', out_root,
           '--ann-file', osp.join(imagenet_root, 'meta', 'train.txt'), '--workers', '0', '--strict',
           '--no-progress']
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}')
    return out_root


# The rehearsal's sizes: the smallest at which every step still does what it does at scale. 2 processes of 2
# images each, so BN and the gathered batch see more than one sample; 2 optimiser steps per pretraining, so the
# second uses updated weights, momentum encoders and queues; an evaluation of every val image. 8 ImageNet classes
# (the linear head's top-5 evaluator needs at least 5) of one training and one val image each. Crops of 96 px
# instead of 224 for pretraining (DetCo's local patch sets scaled alike), 64 px for the linear evaluation; COCO
# images of 128 px with short sides 112-128 (instead of 640-800); the second stage of Mask R-CNN samples 32 RoIs
# per training image (512) and keeps 100 proposals and 20 detections per test image (1000 and 100).
SIZES = dict(classes=8, train_per_class=1, val_per_class=1, imagenet_size=(80, 64), coco_train=8, coco_val=2,
             coco_size=128, batch=2, epochs=1, pretrain_crop=96, linear_crop=64,
             coco_scales=((1333, 112), (1333, 128)), rcnn_rois=32, test_proposals=100, test_detections=20)
CROP_TYPES = ('RandomResizedCrop', 'DetConRandomResizedCrop')


def _crop_options(node, path: str, ratio: float, px: int) -> List[str]:
    """``--cfg-options`` that set every view crop under a pipeline node to ``px`` (DetCo's local patch sets:
    cells, crop and patches scaled by ``ratio``), found by walking the recipe's pipeline."""
    if isinstance(node, (list, tuple)):
        return [o for i, v in enumerate(node) for o in _crop_options(v, f'{path}.{i}', ratio, px)]
    if not hasattr(node, 'items'):
        return []
    kind = str(node.get('type', '')).split('.')[-1]
    if kind in CROP_TYPES:
        return [f'{path}.scale={px}']
    if kind == 'DetCoLocalPatches':
        cell = max(1, round(node['cell_size'] * ratio))
        return [f'{path}.cell_size={cell}', f'{path}.crop_size={cell * node.get("grid_size", 3)}',
                f'{path}.patch_size={max(1, round(node["patch_size"] * ratio))}']
    return [o for k, v in node.items() if k != 'type' for o in _crop_options(v, f'{path}.{k}', ratio, px)]


def pretrain_crop_options(method: str, px: int, base: int = 224) -> List[str]:
    """The crop-size options of ``method``'s in1k recipe (its wrapper keeps the recipe's pipeline layout)."""
    from .gpu_plan import IN1K_CONFIGS, _load
    pipeline = _load(IN1K_CONFIGS[method]).train_dataloader.dataset.pipeline
    return _crop_options(pipeline, 'train_dataloader.dataset.pipeline', px / base, px)


def _loader(name: str, batch: int) -> List[str]:
    return [f'{name}.batch_size={batch}', f'{name}.num_workers=0', f'{name}.persistent_workers=False',
            f'{name}.pin_memory=False']


def step_options(data_dir: str, methods: Sequence[str] = (), sizes: Optional[dict] = None) -> Dict[str, List[str]]:
    """``--cfg-options`` per step kind (and ``'pretrain/<method>'``) that point the real configs at the toy trees
    under ``data_dir``.

    Data roots, number of classes, batch, workers, epochs, image scale, RoI and detection counts and the log
    interval only, and the detector's test score threshold (see the module doc).
    """
    s = dict(SIZES, **(sizes or {}))
    inet = osp.join(data_dir, 'imagenet') + '/'
    coco = osp.join(data_dir, 'coco') + '/'
    common = ['default_hooks.logger.interval=1', 'env_cfg.dist_cfg.backend=gloo']
    crop = s['linear_crop']
    scales = '[' + ','.join(f'({w},{h})' for w, h in s['coco_scales']) + ']'
    options = {f'pretrain/{m}': pretrain_crop_options(m, s['pretrain_crop']) for m in methods if m != 'random'}
    return dict(
        options,
        pretrain=[f'train_dataloader.dataset.data_root={inet}'] + _loader('train_dataloader', s['batch'])
        + common,
        coco=[f'train_dataloader.dataset.data_root={coco}', f'val_dataloader.dataset.data_root={coco}',
              f'val_evaluator.ann_file={coco}annotations/instances_val2017.json',
              f'train_dataloader.dataset.pipeline.2.scales={scales}',
              f'val_dataloader.dataset.pipeline.1.scale={tuple(s["coco_scales"][-1])}'.replace(' ', ''),
              'model.test_cfg.rcnn.score_thr=0.0', f'model.train_cfg.rcnn.sampler.num={s["rcnn_rois"]}',
              f'model.test_cfg.rpn.max_per_img={s["test_proposals"]}',
              f'model.test_cfg.rcnn.max_per_img={s["test_detections"]}', f'train_cfg.max_epochs={s["epochs"]}']
        + _loader('train_dataloader', s['batch']) + _loader('val_dataloader', 1) + common,
        linear=[f'train_dataloader.dataset.data_root={inet}', f'val_dataloader.dataset.data_root={inet}',
                f'model.head.num_classes={s["classes"]}', f'data_preprocessor.num_classes={s["classes"]}',
                f'train_dataloader.dataset.pipeline.1.scale={crop}',
                f'val_dataloader.dataset.pipeline.1.scale={crop * 8 // 7}',
                f'val_dataloader.dataset.pipeline.2.crop_size={crop}', f'train_cfg.max_epochs={s["epochs"]}']
        + _loader('train_dataloader', s['batch']) + _loader('val_dataloader', s['batch']) + common)


def rehearsal_env(port: Optional[int] = None) -> Dict[str, str]:
    """The steps' environment: this interpreter first on ``PATH`` (the plan calls ``python``), one thread per
    process, the rendezvous port ``port``, else ``$PORT``, else a free one."""
    import socket
    env = dict(os.environ)
    port = port or env.get('PORT')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env['PYTHON'] = sys.executable
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['OMP_NUM_THREADS'] = '1'
    if port is None:
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
    env['PORT'] = str(port)
    return env


def make_data(data_dir: str, methods: Sequence[str], sizes: Optional[dict] = None,
              env: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """The toy ImageNet and COCO trees under ``data_dir`` and, for DetCon rows, their FH masks.

    Reused when complete (a ``.complete`` marker per tree, ``generate_masks.py`` resumes by itself).
    Returns the wall seconds of each part (0 when reused).
    """
    s = dict(SIZES, **(sizes or {}))
    times = {}
    for name, make in (
            ('imagenet', lambda root: make_imagenet_tree(root, s['classes'], s['train_per_class'],
                                                         s['val_per_class'], s['imagenet_size'])),
            ('coco', lambda root: make_coco_tree(root, s['coco_train'], s['coco_val'], s['coco_size']))):
        root, start = osp.join(data_dir, name), time.time()
        marker = osp.join(root, '.complete')
        if not osp.isfile(marker):
            make(root)
            with open(marker, 'w') as f:
                json.dump(s, f)
        times[f'data/{name}'] = round(time.time() - start, 2)
    if any(m in DETCON_METHODS for m in methods):
        start = time.time()
        generate_fh_masks(osp.join(data_dir, 'imagenet'), env=env)
        times['data/fh-masks'] = round(time.time() - start, 2)
    return times


def rehearse(methods: Sequence[str], work_dir: str, sizes: Optional[dict] = None,
             port: Optional[int] = None) -> dict:
    """Make the toy data, write the in1k-coco plan for ``methods`` at toy size and launch it.

    Returns :func:`~mmdetcon.benchmark.gpu_plan.launch_plan`'s results (also in ``work_dir/results.json`` and
    ``results.md``), with the data preparation's wall seconds under ``'data'``, also written to
    ``work_dir/rehearsal.json`` with the sizes and the total; ``rehearsal.md`` is :func:`summary`.
    """
    from .gpu_plan import launch_plan, write_plan
    s = dict(SIZES, **(sizes or {}))
    start = time.time()
    env = rehearsal_env(port)
    abs_work = osp.abspath(work_dir)
    data_dir = osp.join(abs_work, 'data')
    data_times = make_data(data_dir, methods, s, env)
    script = write_plan(list(methods), work_dir, gpus=2, epochs=s['epochs'], step_options=step_options(data_dir, methods, s))
    results = launch_plan(osp.dirname(script), env=env)
    record = dict(sizes=s, data=data_times, total_s=round(time.time() - start, 1), methods=list(methods))
    with open(osp.join(abs_work, 'rehearsal.json'), 'w') as f:
        json.dump(record, f, indent=1)
    with open(osp.join(abs_work, 'rehearsal.md'), 'w') as f:
        f.write(summary(abs_work))
    return dict(results, rehearsal=record)


def summary(work_dir: str) -> str:
    """``results.md`` of a rehearsal followed by its wall seconds per step (data preparation included)."""
    work_dir = osp.abspath(work_dir)
    with open(osp.join(work_dir, 'results.md')) as f:
        table = f.read()
    with open(osp.join(work_dir, 'results.json')) as f:
        steps = json.load(f)['steps']
    with open(osp.join(work_dir, 'rehearsal.json')) as f:
        record = json.load(f)
    from .gpu_plan import _stage_dir
    from .stages import load_done

    def cpu(name: str) -> str:
        done = load_done(_stage_dir(work_dir, name), log=lambda _: None) or {}
        return '—' if done.get('cpu_s') is None else f'{done["cpu_s"]:.1f}'

    lines = ['', '## Rehearsal: seconds per step (2 CPU processes per training step)', '',
             '| step | wall (s) | CPU (s) |', '|---|---|---|']
    lines += [f'| {name} | {sec:.1f} | |' for name, sec in record['data'].items()]
    lines += [f'| {s["name"]} | {"—" if s["wall_s"] is None else format(s["wall_s"], ".1f")} | {cpu(s["name"])} |'
              for s in steps]
    lines += [f'| total | {record["total_s"]:.1f} | |']
    return table + '\n'.join(lines) + '\n'
