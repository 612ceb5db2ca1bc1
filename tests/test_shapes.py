"""Synthetic shapes data: determinism, COCO/mask consistency, layout, dataset errors, demo pipelines."""
import filecmp
import glob
import importlib.util
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from mmdetcon.datasets.shapes import (CLASS_SPECS, MAX_OBJECTS, MIN_OBJECTS, OBJECT_SIZE, SHAPE_CLASSES,
                                      SHAPES_CLASSES, ShapesDataset, make_shapes, min_visible_area, render_image)

N, SIZE = 8, 64


@pytest.fixture(scope='module')
def tiny(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('tiny_shapes'))
    make_shapes(root, N, SIZE, seed=0, split='train', progress=False)
    return root


def _files(root: str):
    return sorted(osp.relpath(p, root) for p in glob.glob(osp.join(root, '**', '*'), recursive=True)
                  if osp.isfile(p))


def _read(path: str) -> np.ndarray:
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_same_seed_same_bytes_also_in_parallel(tiny, tmp_path):
    again = str(tmp_path / 'again')
    make_shapes(again, N, SIZE, seed=0, split='train', num_workers=2, progress=False)
    assert _files(again) == _files(tiny)
    assert len([f for f in _files(tiny) if f.endswith('.png')]) == 3 * N
    for rel in _files(tiny):
        assert filecmp.cmp(osp.join(tiny, rel), osp.join(again, rel), shallow=False), rel


def test_other_seed_or_split_differs(tiny, tmp_path):
    other = str(tmp_path / 'other')
    make_shapes(other, N, SIZE, seed=1, split='train', progress=False)
    for i in range(N):
        name = f'train/images/{i:06d}.png'
        assert not np.array_equal(_read(osp.join(tiny, name)), _read(osp.join(other, name))), name
    assert not np.array_equal(render_image(0, 'train', 0, SIZE)['img'], render_image(0, 'val', 0, SIZE)['img'])


def test_image_depends_only_on_seed_split_index(tiny):
    # Image 5 rendered alone equals image 5 of the generated set (BGR on disk).
    out = render_image(0, 'train', 5, SIZE)
    assert np.array_equal(_read(osp.join(tiny, 'train/images/000005.png'))[..., ::-1], out['img'])
    assert np.array_equal(_read(osp.join(tiny, 'train/instance/000005.png')), out['instance'])


def test_layout_dtypes_and_image_size(tmp_path):
    for size in (48, 80):
        root = str(tmp_path / f's{size}')
        make_shapes(root, 2, size, seed=3, split='val', progress=False)
        img = _read(osp.join(root, 'val/images/000001.png'))
        sem = _read(osp.join(root, 'val/semantic/000001.png'))
        ins = _read(osp.join(root, 'val/instance/000001.png'))
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert sem.shape == (size, size) and sem.dtype == np.uint8
        assert ins.shape == (size, size) and ins.dtype == np.uint16
        coco = json.load(open(osp.join(root, 'annotations/instances_val.json')))
        assert {(im['height'], im['width']) for im in coco['images']} == {(size, size)}
        assert [im['file_name'] for im in coco['images']] == ['000000.png', '000001.png']
    with pytest.raises(ValueError, match='image_size'):
        make_shapes(str(tmp_path / 'bad'), 2, 8)


def test_coco_rle_matches_instance_maps(tiny):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    coco = COCO(osp.join(tiny, 'annotations/instances_train.json'))
    assert [c['id'] for c in coco.loadCats(coco.getCatIds())] == list(range(1, 9))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPES_CLASSES)
    assert len(coco.getImgIds()) == N
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        instance = _read(osp.join(tiny, 'train/instance', info['file_name'])).astype(np.int64)
        semantic = _read(osp.join(tiny, 'train/semantic', info['file_name'])).astype(np.int64)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        ids_in_map = sorted(set(np.unique(instance).tolist()) - {0})
        assert ids_in_map == list(range(1, len(anns) + 1)), info['file_name']
        matched = []
        for ann in anns:
            assert ann['iscrowd'] == 0
            m = mask_utils.decode(ann['segmentation']).astype(bool)
            # The decoded mask is exactly the pixels of one instance id.
            under = np.unique(instance[m])
            assert len(under) == 1 and under[0] > 0, (info['file_name'], ann['id'])
            assert np.array_equal(m, instance == under[0])
            matched.append(int(under[0]))
            assert ann['area'] == m.sum()
            ys, xs = np.nonzero(m)
            assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert set(np.unique(semantic[m]).tolist()) == {ann['category_id']}
        assert sorted(matched) == ids_in_map
        assert np.array_equal(semantic == 0, instance == 0)


def test_object_counts_and_visible_areas():
    sampled, kept = [], []
    for i in range(60):
        out = render_image(7, 'train', i, 48)
        n = int(out['instance'].max())
        assert len(out['categories']) == n
        assert set(np.unique(out['instance']).tolist()) == set(range(n + 1))
        areas = np.bincount(out['instance'].ravel().astype(np.int64))[1:]
        assert (areas >= min_visible_area(48)).all()
        sampled.append(out['num_sampled'])
        kept.append(n)
    assert min(sampled) == MIN_OBJECTS and max(sampled) == MAX_OBJECTS
    assert all(1 <= k <= s for k, s in zip(kept, sampled))
    assert sum(k < s for k, s in zip(kept, sampled)) > 0, 'no occlusion drop in 60 images'


def test_scene_ranges_object_size_and_count(tmp_path):
    def stats(**scene):
        outs = [render_image(3, 'train', i, 64, **scene) for i in range(40)]
        areas = [np.bincount(o['instance'].ravel().astype(np.int64))[1:] for o in outs]
        return [o['num_sampled'] for o in outs], float(np.mean([a.max() for a in areas]))
    sampled, large = stats(object_size=(0.25, 0.3), num_objects=(1, 1))
    assert set(sampled) == {1}
    # one object of radius >= 16 px per image: every shape covers >= 1.4 r^2 (less where the border clips it)
    assert large > 0.9 * (0.25 * 64) ** 2
    sampled, small = stats()
    assert min(sampled) == MIN_OBJECTS and max(sampled) == MAX_OBJECTS
    assert small < 0.5 * large, (small, large)  # default radii are 0.09-0.2 of the side
    # the scene ranges are generation parameters: recorded, checked on reuse; old markers hold the defaults
    root = str(tmp_path / 'scene')
    s = make_shapes(root, 2, 32, object_size=(0.2, 0.3), num_objects=(1, 2), progress=False)
    assert s['object_size'] == [0.2, 0.3] and s['num_objects'] == [1, 2]
    with pytest.raises(ValueError, match='object_size='):
        make_shapes(root, 2, 32, progress=False)
    legacy = str(tmp_path / 'legacy')
    make_shapes(legacy, 2, 32, progress=False)
    marker = osp.join(legacy, 'train', '.complete')
    params = json.load(open(marker))
    assert params['object_size'] == list(OBJECT_SIZE)
    json.dump({k: v for k, v in params.items() if k not in ('object_size', 'num_objects')}, open(marker, 'w'))
    assert not make_shapes(legacy, 2, 32, progress=False)['generated']
    with pytest.raises(ValueError, match='num_objects='):
        make_shapes(legacy, 2, 32, num_objects=(1, 2), progress=False)
    for bad in (dict(object_size=(0.3, 0.2)), dict(object_size=(0, 0.2)), dict(num_objects=(0, 2)),
                dict(num_objects=(3, 2)), dict(style='glossy')):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_shapes(str(tmp_path / 'bad'), 2, 32, progress=False, **bad)


def test_flat_style_holds_nothing_but_shapes(tmp_path):
    for i in range(10):
        out = render_image(0, 'train', i, 64, shape_only=True, style='flat')
        img, inst = out['img'].astype(np.float32), out['instance']
        assert np.abs(img - img.mean(2, keepdims=True)).mean() < 4  # grey: channels differ by noise only
        for k in range(int(inst.max()) + 1):  # background and every object: one level + sensor noise
            region = img[inst == k][:, 0]
            assert region.std() < 6, (i, k, region.std())
        if inst.max():
            assert img[inst > 0].mean() > img[inst == 0].mean() + 30  # objects lighter than the background
    root = str(tmp_path / 'flat')
    assert make_shapes(root, 2, 32, shape_only=True, style='flat', progress=False)['style'] == 'flat'
    with pytest.raises(ValueError, match='style='):
        make_shapes(root, 2, 32, shape_only=True, progress=False)
    with pytest.raises(ValueError, match='needs shape_only=True'):  # class names would name colours not drawn
        make_shapes(str(tmp_path / 'flat2'), 2, 32, style='flat', progress=False)


def test_num_sampled_recorded_in_coco(tiny):
    coco = json.load(open(osp.join(tiny, 'annotations/instances_train.json')))
    per_image = np.bincount([a['image_id'] for a in coco['annotations']], minlength=N)
    for im in coco['images']:
        assert MIN_OBJECTS <= im['num_sampled'] <= MAX_OBJECTS
        assert 1 <= per_image[im['id']] <= im['num_sampled']


def test_marker_reuse_mismatch_and_interrupted(tmp_path):
    root = str(tmp_path / 'd')
    assert make_shapes(root, 4, 32, progress=False)['generated']
    assert not make_shapes(root, 3, 32, progress=False)['generated']  # a prefix of the existing set
    with pytest.raises(ValueError, match=re.escape(osp.join(root, 'train')) + '.*image_size=32'):
        make_shapes(root, 4, 40, progress=False)
    assert make_shapes(root, 4, 40, overwrite=True, progress=False)['image_size'] == 40
    # An interrupted run (started marker, no completion marker) is regenerated.
    os.remove(osp.join(root, 'train', '.complete'))
    open(osp.join(root, 'train', '.generating'), 'w').write('{}')
    os.remove(osp.join(root, 'train', 'images', '000002.png'))
    assert make_shapes(root, 4, 40, progress=False)['generated']
    assert osp.isfile(osp.join(root, 'train', 'images', '000002.png'))
    assert not osp.exists(osp.join(root, 'train', '.generating'))
    # A folder that make_shapes did not write is never overwritten.
    foreign = tmp_path / 'foreign' / 'train'
    foreign.mkdir(parents=True)
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(ValueError, match=re.escape(str(foreign))):
        make_shapes(str(tmp_path / 'foreign'), 2, 32, progress=False)


def test_dataset_generates_and_loads_maps(tmp_path):
    root = str(tmp_path / 'gen')
    load_seg = dict(type='LoadAnnotations', with_bbox=False, with_label=False, with_seg=True)
    ds = ShapesDataset(data_root=root, num_images=3, image_size=32, with_masks='instance',
                       pipeline=[dict(type='LoadImageFromFile'), load_seg])
    assert len(ds) == 3 and ds.metainfo['classes'] == SHAPES_CLASSES
    out = ds[2]
    assert out['img'].shape == (32, 32, 3)
    assert np.array_equal(out['gt_seg_map'], render_image(0, 'train', 2, 32)['instance'])
    sem = ShapesDataset(data_root=root, num_images=3, image_size=32, with_masks='semantic')
    assert sem.get_data_info(1)['seg_map_path'] == osp.join(root, 'train', 'semantic', '000001.png')
    assert 'seg_map_path' not in ShapesDataset(data_root=root, num_images=3, image_size=32).get_data_info(0)


def test_missing_root_names_path(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(osp.join(missing, 'train', 'images'))):
        ShapesDataset(data_root=missing, generate=False)
    assert not osp.exists(missing)


@pytest.mark.parametrize('content', [b'not a png at all', b'', b'\x89PNG\r\n\x1a\n\x00\x00'],
                         ids=['garbage', 'empty', 'truncated'])
def test_corrupt_image_names_file(tmp_path, content):
    img_dir = tmp_path / 'folder' / 'train' / 'images'
    img_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    (img_dir / 'b.png').write_bytes(content)
    ds = ShapesDataset(data_root=str(tmp_path / 'folder'), generate=False, num_images=None,
                       pipeline=[dict(type='LoadImageFromFile')])
    assert len(ds) == 2 and ds[0]['img'].shape == (8, 8, 3)
    with pytest.raises(ValueError, match=re.escape(str(img_dir / 'b.png'))):
        ds[1]


def test_missing_map_names_file(tmp_path):
    img_dir = tmp_path / 'f' / 'train' / 'images'
    img_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / 'x.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'f' / 'train' / 'instance' / 'x.png'))):
        ShapesDataset(data_root=str(tmp_path / 'f'), generate=False, num_images=None, with_masks='instance')


def test_mmdet_coco_dataset_reads_annotations(tiny):
    try:
        from mmdet.datasets import CocoDataset
        from mmdet.datasets.transforms import LoadAnnotations
    except ImportError as e:  # mmdet needs full mmcv (compiled ops)
        pytest.skip(f'mmdet.datasets not importable (mmcv ops absent?): {e}')
    from mmcv.transforms import LoadImageFromFile
    ds = CocoDataset(ann_file='annotations/instances_train.json', data_root=tiny,
                     data_prefix=dict(img='train/images/'), metainfo=dict(classes=SHAPES_CLASSES),
                     pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)],
                     test_mode=True)
    assert len(ds) == N
    out = ds[0]
    instance = _read(osp.join(tiny, 'train/instance', osp.basename(out['img_path'])))
    masks = out['gt_masks'].to_ndarray().astype(bool)
    assert len(masks) == instance.max()
    assert sorted(int(np.unique(instance[m])[0]) for m in masks) == list(range(1, instance.max() + 1))
    assert set(out['gt_bboxes_labels'].tolist()) <= set(range(len(SHAPES_CLASSES)))


def test_cli_summary_and_preview(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('make_shapes_cli', osp.join(ROOT, 'tools/data/make_shapes.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    import argparse
    out, preview = str(tmp_path / 'cli'), str(tmp_path / 'p.png')
    cli.main(argparse.Namespace(out=out, num_images=3, image_size=32, seed=0, splits=['train', 'val'],
                                workers=0, overwrite=False, preview=preview, preview_count=3, shape_only=False,
                                object_size=(0.09, 0.2), num_objects=(2, 6), style="textured"))
    text = capsys.readouterr().out
    assert 'train: 3 images of 32 px' in text and 'val: 3 images' in text and 'preview:' in text
    grid = cv2.imread(preview)
    assert grid is not None and grid.shape[0] > 32 and grid.shape[1] > 3 * 2 * 32


def _instance_colours(shape_only: bool, count: int = 40, size: int = 64):
    """(class id, nearest palette index of the instance's bright pixels) of every instance in ``count`` images."""
    palette = np.array([rgb for _, _, rgb, _ in CLASS_SPECS], np.float32)
    pairs = []
    for i in range(count):
        out = render_image(0, 'train', i, size, shape_only=shape_only)
        for k, cls in enumerate(out['categories'], 1):
            px = out['img'][out['instance'] == k].astype(np.float32)
            bright = px[px.sum(1) >= np.median(px.sum(1))]  # unpatterned pixels (patterns are 0.45x darker)
            colour = np.median(bright, 0)
            pairs.append((cls, int(np.argmin(((palette - colour) ** 2).sum(1)))))
    return pairs


def test_default_classes_tie_colour_shape_only_does_not():
    default = _instance_colours(False)
    assert all(colour == cls - 1 for cls, colour in default)  # class k is drawn in colour k (unchanged)
    pairs = _instance_colours(True)
    per_class = {}
    for cls, colour in pairs:
        per_class.setdefault(cls, set()).add(colour)
    frequent = [c for c in per_class if sum(1 for k, _ in pairs if k == c) >= 8]
    assert len(frequent) >= 4 and all(len(per_class[c]) >= 3 for c in frequent), per_class
    assert np.mean([colour == cls - 1 for cls, colour in pairs]) < 0.4  # ~1/8 when independent


def test_shape_only_classes_names_and_marker(tmp_path):
    root = str(tmp_path / 'so')
    s = make_shapes(root, 4, 32, shape_only=True, progress=False)
    assert s['classes'] == list(SHAPE_CLASSES) == ['circle', 'square', 'triangle', 'ellipse', 'diamond',
                                                   'hexagon', 'star', 'cross']
    with open(osp.join(root, 'annotations', 'instances_train.json')) as f:
        assert [c['name'] for c in json.load(f)['categories']] == list(SHAPE_CLASSES)
    with pytest.raises(ValueError, match='classes='):  # the default classes on a shape-only root
        make_shapes(root, 4, 32, progress=False)
    ds = ShapesDataset(data_root=root, num_images=4, image_size=32, shape_only=True)
    assert ds.metainfo['classes'] == SHAPE_CLASSES and len(ds) == 4


BASELINES = ['byol_resnet18_1xb32-lars-coslr-5e_shapes.py', 'mocov2_resnet18_1xb32-coslr-5e_shapes.py',
             'simclr_resnet18_1xb32-lars-coslr-5e_shapes.py', 'densecl_resnet18_1xb32-coslr-5e_shapes.py']


@pytest.mark.parametrize('name', BASELINES)
def test_baseline_one_step_on_shapes(name, tmp_path):
    """Config dataset + pipeline + collate + preprocessor + model: one finite training step (batch 4)."""
    from mmengine.config import Config
    from mmengine.dataset import default_collate
    from mmengine.logging import MessageHub
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    cfg = Config.fromfile(osp.join(ROOT, 'configs/baselines', name))
    init_default_scope('mmpretrain')
    assert cfg.model.backbone.depth == 18 and cfg.train_cfg.max_epochs == 5
    assert cfg.default_hooks.logger.interval <= 10
    if 'queue_len' in cfg.model:
        assert cfg.model.queue_len % cfg.train_dataloader.batch_size == 0
        cfg.model.queue_len = 8
    torch.manual_seed(0)
    ds_cfg = dict(cfg.train_dataloader.dataset, data_root=str(tmp_path / 'data'), num_images=4, image_size=64)
    dataset = DATASETS.build(ds_cfg)
    batch = default_collate([dataset[i] for i in range(4)])
    assert len(batch['inputs']) == 2 and batch['inputs'][0].shape == (4, 3, 96, 96)
    model = revert_sync_batchnorm(MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor)))
    MessageHub.get_current_instance().update_info('max_iters', 10)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.backbone.conv1.weight.detach().clone()
    log = model.train_step(batch, wrapper)
    assert all(torch.isfinite(v).all() for v in log.values())
    assert not torch.equal(before, model.backbone.conv1.weight)
