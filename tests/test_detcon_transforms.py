"""DetCon data side: mask sources, mask-consistent views, datasets and the shapes data config.

Expected values are computed independently: crops/flips/nearest resizes with explicit Python index
arithmetic, FH with skimage called directly on the RGB image, COCO ids from hand-painted arrays.
"""
import json
import math
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import DefaultScope
from pycocotools import mask as mask_utils
from skimage.segmentation import felzenszwalb

import mmdetcon  # noqa: F401  (registers the transforms and datasets)
from conftest import ROOT
from mmdetcon.registry import DATASETS, TRANSFORMS

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
PALETTE = {7: (10, 20, 30), 300: (200, 40, 90), 1234: (30, 220, 60), 0: (250, 250, 250)}


def painted_scene(h=60, w=80):
    """An id map of overlapping rectangles with non-contiguous ids, and a BGR image whose colour
    encodes the id of every pixel."""
    ids = np.full((h, w), 7, np.int32)
    ids[5:30, 10:50] = 300
    ids[20:55, 40:70] = 1234
    ids[0:12, 60:80] = 0
    img = np.zeros((h, w, 3), np.uint8)
    for k, colour in PALETTE.items():
        img[ids == k] = colour
    return img, ids


def nearest_reference(a, out_h, out_w):
    """Half-pixel nearest resize written with explicit float arithmetic (a loop, not the
    vectorised integer formula of the implementation)."""
    h, w = a.shape[:2]
    out = np.empty((out_h, out_w) + a.shape[2:], a.dtype)
    for i in range(out_h):
        si = min(int(math.floor((i + 0.5) * h / out_h)), h - 1)
        for j in range(out_w):
            sj = min(int(math.floor((j + 0.5) * w / out_w)), w - 1)
            out[i, j] = a[si, sj]
    return out


def uniform_5x5(ids):
    """True where the 5x5 neighbourhood (reflect-101 border, like cv2's resize) has one id."""
    pad = np.pad(ids, 2, mode='reflect')
    h, w = ids.shape
    same = np.ones((h, w), bool)
    for dy in range(5):
        for dx in range(5):
            same &= pad[dy:dy + h, dx:dx + w] == ids
    return same


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Nested transform lists (views, RandomApply) resolve names in the default scope, as in a
    Runner with ``default_scope='mmpretrain'``; restored after each test."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def build(cfg):
    return TRANSFORMS.build(cfg)


def fh_reference(rgb, scale, sigma, min_size):
    return felzenszwalb(rgb, scale=scale, sigma=sigma, min_size=min_size)


def write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, array)


# --------------------------------------------------------------------------------------------
# Geometry: crop, flip, resize keep ids and stay aligned with the image
# --------------------------------------------------------------------------------------------
def test_crop_flip_resize_keep_ids_and_alignment():
    img, ids = painted_scene()
    out_h, out_w = 40, 48  # non-square output catches h/w swaps
    view = Compose([
        build(dict(type='DetConRandomResizedCrop', scale=(out_h, out_w))),
        build(dict(type='RandomFlip', prob=0.5)),
    ])
    flips, checked = set(), 0
    for seed in range(30):
        np.random.seed(seed)
        out = view(dict(img=img.copy(), gt_seg_map=ids.copy(), img_path='scene'))
        x0, y0, x1, y1 = out['crop_bbox']
        assert 0 <= x0 < x1 <= ids.shape[1] and 0 <= y0 < y1 <= ids.shape[0]
        expected = nearest_reference(ids[y0:y1, x0:x1], out_h, out_w)
        safe = nearest_reference(uniform_5x5(ids[y0:y1, x0:x1]), out_h, out_w)
        if out['flip']:
            expected, safe = expected[:, ::-1], safe[:, ::-1]
        flips.add(bool(out['flip']))
        seg = out['gt_seg_map']
        assert seg.shape == (out_h, out_w) and out['img'].shape == (out_h, out_w, 3)
        np.testing.assert_array_equal(seg, expected)
        assert set(np.unique(seg)) <= set(PALETTE)  # a subset of the original ids, not relabelled
        # Image/map alignment: away from region borders, the bicubic image has the id's colour.
        colours = np.array([PALETTE[k] for k in seg[safe]], np.int32)
        assert np.abs(out['img'][safe].astype(np.int32) - colours).max() <= 1
        checked += int(safe.sum())
    assert flips == {True, False} and checked > 1000


def test_random_flip_flips_seg_map():
    img, ids = painted_scene()
    out = build(dict(type='RandomFlip', prob=1.0))(dict(img=img.copy(), gt_seg_map=ids.copy()))
    np.testing.assert_array_equal(out['gt_seg_map'], ids[:, ::-1])
    np.testing.assert_array_equal(out['img'], img[:, ::-1])


def test_crop_statistics_single_try():
    t = build(dict(type='DetConRandomResizedCrop', scale=32))
    big = np.zeros((400, 400, 3), np.uint8)
    n, H, W = 4000, 400, 400
    np.random.seed(0)
    draws = np.array([t.rand_crop_params(big) for _ in range(n)])  # (offset_h, offset_w, h, w)
    oh, ow, h, w = draws.T
    frac = h * w / (H * W)
    assert frac.min() >= 0.08 * 0.95 and frac.max() <= 1.0
    assert frac.min() < 0.1 and frac.max() > 0.95
    # Area fractions below 0.75 are never clipped (r <= 4/3), so P(frac < 0.5) = (0.5-0.08)/0.92.
    p = np.mean(frac < 0.5)
    assert abs(p - 0.42 / 0.92) < 4 * math.sqrt(0.25 / n)
    unclipped = (h < H) & (w < W)
    log_r = np.log(w[unclipped] / h[unclipped])
    assert log_r.min() >= math.log(3 / 4) - 0.03 and log_r.max() <= math.log(4 / 3) + 0.03
    assert abs(log_r.mean()) < 0.02  # log-uniform: symmetric around ratio 1
    # One try with clipping (no retries, no centre fallback): on a square image the width is
    # clipped to W whenever A*r > 1, i.e. with probability E_r[(1 - 1/r)^+] / 0.92
    # = (L - 1/4) / (2 L 0.92), L = log(4/3) (~0.071); retries would make this ~0.
    L = math.log(4 / 3)
    p_clip = (L - 0.25) / (2 * L * 0.92)
    assert abs(np.mean(w == W) - p_clip) < 0.02 and abs(np.mean(h == H) - p_clip) < 0.02
    # Uniform offsets over the free range.
    free = (W - w)[unclipped]
    rel = ow[unclipped][free > 0] / free[free > 0]
    assert 0 <= rel.min() and rel.max() <= 1 and abs(rel.mean() - 0.5) < 0.03


def test_image_smaller_than_crop_is_upsampled():
    img, ids = painted_scene(20, 24)
    mv = build(dict(type='MultiViewWithMask', num_views=[1, 1], transforms=[
        [dict(type='DetConRandomResizedCrop', scale=64)],
        [dict(type='DetConRandomResizedCrop', scale=64), dict(type='RandomFlip', prob=1.0)]]))
    np.random.seed(1)
    out = mv(dict(img=img, gt_seg_map=ids))
    assert [v.shape for v in out['img']] == [(64, 64, 3), (64, 64, 3)]
    assert out['mask'].shape == (2, 64, 64) and out['mask'].dtype == np.int32
    assert set(np.unique(out['mask'])) <= set(np.unique(ids))


def test_single_segment_image():
    img = np.full((50, 60, 3), 128, np.uint8)
    pipe = Compose([build(dict(type='FelzenszwalbMask', scale=100, min_size=50)),
                    build(dict(type='MultiViewWithMask', num_views=2, transforms=[
                        [dict(type='DetConRandomResizedCrop', scale=32),
                         dict(type='RandomFlip', prob=0.5)]])),
                    build(dict(type='PackInputs'))])
    packed = pipe(dict(img=img))
    mask = packed['data_samples'].mask
    assert mask.shape == (2, 32, 32) and torch.all(mask == 0)


# --------------------------------------------------------------------------------------------
# Mask sources
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kind', ['grey', 'rgba', 'rgb16'])
def test_unusual_pngs_load_as_3_channels_and_segment(tmp_path, kind):
    rng = np.random.default_rng(0)
    h, w = 24, 32
    base = np.zeros((h, w, 3), np.uint8)
    base[:, :16] = (40, 90, 200)
    base[:, 16:] = (220, 200, 30)
    base = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)  # RGB
    path = str(tmp_path / f'{kind}.png')
    if kind == 'grey':
        grey = base[..., 0]
        write_png(path, grey)
        expected_rgb = np.repeat(grey[..., None], 3, axis=2)
    elif kind == 'rgba':
        alpha = np.full((h, w, 1), 77, np.uint8)
        write_png(path, np.concatenate([base[..., ::-1], alpha], axis=2))  # BGRA on disk
        expected_rgb = base
    else:
        wide = base.astype(np.uint16) * 257 + 100  # 16-bit values whose top byte is `base`
        write_png(path, wide[..., ::-1])
        expected_rgb = (wide >> 8).astype(np.uint8)
    pipe = Compose([build(dict(type='LoadImageFromFile')),
                    build(dict(type='FelzenszwalbMask', scale=50, sigma=0.8, min_size=20))])
    out = pipe(dict(img_path=path))
    assert out['img'].shape == (h, w, 3) and out['img'].dtype == np.uint8
    np.testing.assert_array_equal(out['img'][..., ::-1], expected_rgb)
    seg = out['gt_seg_map']
    assert seg.shape == (h, w) and seg.dtype == np.int32
    np.testing.assert_array_equal(seg, fh_reference(expected_rgb, 50, 0.8, 20))


def test_felzenszwalb_keeps_ids_above_255():
    # 40 x 40 tiles of distinct colours, min_size 1: every tile is its own segment (> 255 ids).
    tiles = np.random.default_rng(0).permutation(1600)
    rgb = np.stack([tiles % 256, (tiles * 7) % 256, (tiles // 256) * 40], -1).astype(np.uint8)
    rgb = np.repeat(np.repeat(rgb.reshape(40, 40, 3), 2, 0), 2, 1)
    out = build(dict(type='FelzenszwalbMask', scale=1, sigma=0.0, min_size=1))(
        dict(img=rgb[..., ::-1].copy()))
    ref = fh_reference(rgb, 1, 0.0, 1)
    assert ref.max() > 255
    np.testing.assert_array_equal(out['gt_seg_map'], ref)


def test_load_id_map_uint16_round_trip(tmp_path):
    ids = (np.arange(30 * 40).reshape(30, 40) % 1000).astype(np.uint16)
    ids[0, 0] = 65535
    path = str(tmp_path / 'm.png')
    write_png(path, ids)
    img = np.zeros((30, 40, 3), np.uint8)
    out = build(dict(type='LoadIdMap'))(dict(img=img, seg_map_path=path, img_path='x.jpg'))
    assert out['gt_seg_map'].dtype == np.int32
    np.testing.assert_array_equal(out['gt_seg_map'], ids.astype(np.int64))


def test_load_id_map_errors_name_the_file(tmp_path):
    img = np.zeros((30, 40, 3), np.uint8)
    wrong = str(tmp_path / 'wrong_size.png')
    write_png(wrong, np.zeros((30, 41), np.uint8))
    t = build(dict(type='LoadIdMap'))
    with pytest.raises(ValueError, match=r'wrong_size\.png.*30x41.*30x40'):
        t(dict(img=img, seg_map_path=wrong, img_path='a.jpg'))
    colour = str(tmp_path / 'colour.png')
    write_png(colour, np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ValueError, match=r'colour\.png.*3 channels'):
        t(dict(img=img, seg_map_path=colour, img_path='a.jpg'))
    missing = str(tmp_path / 'sub' / 'missing.png')
    with pytest.raises(FileNotFoundError, match=r'missing\.png.*generate_masks\.py'):
        t(dict(img=img, seg_map_path=missing, img_path='a.jpg'))


def test_load_id_map_fallback_and_mirrored_paths(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, 20:] = (200, 30, 30)
    rgb[10:20, 5:15] = (20, 20, 220)
    fh = dict(scale=20, sigma=0.5, min_size=10)
    t = build(dict(type='LoadIdMap', mask_root=str(tmp_path / 'masks'),
                   img_root=str(tmp_path / 'imgs'), fallback='felzenszwalb', fallback_cfg=fh))
    img_path = str(tmp_path / 'imgs' / 'cls' / 'a.JPEG')
    out = t(dict(img=rgb[..., ::-1].copy(), img_path=img_path))  # no mask file: FH online
    np.testing.assert_array_equal(out['gt_seg_map'], fh_reference(rgb, 20, 0.5, 10))
    # A mask file at the mirrored path is preferred to the fallback.
    stored = np.full((30, 40), 9, np.uint8)
    write_png(str(tmp_path / 'masks' / 'cls' / 'a.png'), stored)
    out = t(dict(img=rgb[..., ::-1].copy(), img_path=img_path))
    np.testing.assert_array_equal(out['gt_seg_map'], stored)


def test_grid_mask_ids():
    out = build(dict(type='GridMask', grid_size=4))(dict(img=np.zeros((8, 12, 3), np.uint8)))
    expected = np.kron(np.arange(16).reshape(4, 4), np.ones((2, 3), np.int64))
    np.testing.assert_array_equal(out['gt_seg_map'], expected)
    # Non-divisible size: each id is one rectangle, cell sides differ by at most one pixel.
    seg = build(dict(type='GridMask', grid_size=3))(
        dict(img=np.zeros((10, 7, 3), np.uint8)))['gt_seg_map']
    assert sorted(np.unique(seg)) == list(range(9))
    heights, widths, corners = set(), set(), []
    for k in range(9):
        ys, xs = np.nonzero(seg == k)
        hh, ww = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert hh * ww == ys.size  # a full rectangle
        heights.add(hh)
        widths.add(ww)
        corners.append((ys.min(), xs.min()))
    assert corners == sorted(corners)  # row-major ids
    assert max(heights) - min(heights) <= 1 and max(widths) - min(widths) <= 1
    assert seg[0, 0] == 0 and seg[0, -1] == 2 and seg[-1, 0] == 6 and seg[-1, -1] == 8


# --------------------------------------------------------------------------------------------
# COCO ground-truth instance ids
# --------------------------------------------------------------------------------------------
def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=list(rle['size']), counts=rle['counts'].decode('ascii'))


def _uncompressed_rle(mask):
    flat = mask.astype(np.uint8).flatten(order='F')
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return dict(size=list(mask.shape), counts=counts)


def test_coco_instance_ids(tmp_path):
    h, w = 20, 30
    big = np.zeros((h, w), bool)
    big[2:15, 2:20] = True
    small = np.zeros((h, w), bool)
    small[5:9, 6:12] = True  # inside `big`
    crowd = np.zeros((h, w), bool)
    crowd[16:20, 0:10] = True
    anns = [  # the small instance comes first: it must still stay visible (painted by area)
        dict(id=11, image_id=1, category_id=1, iscrowd=0, segmentation=_rle(small)),
        dict(id=12, image_id=1, category_id=2, iscrowd=0, segmentation=_rle(big)),
        dict(id=13, image_id=1, category_id=1, iscrowd=1, segmentation=_uncompressed_rle(crowd)),
        dict(id=14, image_id=1, category_id=3, iscrowd=0,
             segmentation=[[22.0, 3.0, 29.0, 3.0, 29.0, 12.0, 22.0, 12.0]]),
    ]
    coco = dict(images=[dict(id=1, file_name='a.png', height=h, width=w),
                        dict(id=2, file_name='b.png', height=h, width=w)],
                annotations=anns, categories=[dict(id=i, name=str(i)) for i in (1, 2, 3)])
    os.makedirs(tmp_path / 'annotations')
    with open(tmp_path / 'annotations' / 'inst.json', 'w') as f:
        json.dump(coco, f)
    for name in ('a.png', 'b.png'):
        write_png(str(tmp_path / 'imgs' / name), np.zeros((h, w, 3), np.uint8))
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadCocoInstanceIds')]
    ds = DATASETS.build(dict(type='CocoMaskDataset', data_root=str(tmp_path),
                             ann_file='annotations/inst.json', data_prefix='imgs/',
                             pipeline=pipeline))
    assert len(ds) == 2
    seg = ds[0]['gt_seg_map']
    expected = np.zeros((h, w), np.int32)
    expected[big] = 2
    expected[small] = 1
    expected[crowd] = 3
    poly = seg[:, 21:]
    expected[:, 21:] = poly  # polygon rasterisation is pycocotools'; checked separately below
    np.testing.assert_array_equal(seg, expected)
    assert np.all(seg[5:11, 23:28] == 4) and set(np.unique(poly)) <= {0, 4}
    np.testing.assert_array_equal(ds[1]['gt_seg_map'], np.zeros((h, w)))
    no_crowd = build(dict(type='LoadCocoInstanceIds', with_crowd=False))(
        dict(img=np.zeros((h, w, 3), np.uint8), coco_anns=anns))['gt_seg_map']
    assert np.all(no_crowd[crowd] == 0) and np.all(no_crowd[small] == 1)
    # FH masks instead: with mask_root the dataset points at mirrored PNGs.
    fh_ds = DATASETS.build(dict(type='CocoMaskDataset', data_root=str(tmp_path),
                                ann_file='annotations/inst.json', data_prefix='imgs/',
                                mask_root='masks/', with_anns=False, allow_missing_masks=True))
    info = fh_ds.get_data_info(0)
    assert info['seg_map_path'] == osp.join(str(tmp_path), 'masks', 'a.png')
    assert 'coco_anns' not in info


# --------------------------------------------------------------------------------------------
# Photometric views
# --------------------------------------------------------------------------------------------
def test_color_jitter_brightness_is_additive():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:4] = (60, 100, 140)
    img[4:] = (120, 130, 150)
    t = build(dict(type='DetConColorJitter', brightness=0.4, contrast=0, saturation=0, hue=0))
    deltas = []
    for seed in range(10):
        np.random.seed(seed)
        out = t(dict(img=img.copy()))['img'].astype(np.int32)
        diff = out - img
        inside = (out > 0) & (out < 255)
        d = diff[inside]
        assert d.max() - d.min() <= 1  # one shift for every pixel: additive, not a factor
        delta = d.mean()
        np.testing.assert_array_equal(out[~inside], np.clip(img[~inside] + delta, 0, 255).round())
        deltas.append(delta / 255)
    assert max(np.abs(deltas)) <= 0.4 + 1e-3 and np.ptp(deltas) > 0.1


def test_color_jitter_contrast_keeps_channel_means_and_grey_stays_grey():
    rng = np.random.default_rng(0)
    img = rng.integers(80, 170, (16, 16, 3)).astype(np.uint8)
    t = build(dict(type='DetConColorJitter', brightness=0, contrast=0.4, saturation=0, hue=0))
    np.random.seed(3)
    out = t(dict(img=img.copy()))['img'].astype(np.float64)
    mean = img.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), mean, atol=0.6)
    factors = (out - mean).ravel() / (img - mean).ravel()
    big = np.abs((img - mean).ravel()) > 20
    assert np.ptp(factors[big]) < 0.1 and 0.6 - 0.05 <= factors[big].mean() <= 1.4 + 0.05
    grey = np.repeat(rng.integers(0, 256, (16, 16, 1)), 3, axis=2).astype(np.uint8)
    full = build(dict(type='DetConColorJitter'))
    for seed in range(5):
        np.random.seed(seed)
        g = full(dict(img=grey.copy()))['img'].astype(np.int32)
        assert np.abs(g[..., 0] - g[..., 1]).max() <= 1 and np.abs(g[..., 1] - g[..., 2]).max() <= 1


def test_gaussian_blur_kernel_and_padding():
    img = np.zeros((224, 224, 3), np.float32)
    img[112, 112] = 1000.0
    t = build(dict(type='DetConGaussianBlur', sigma_range=(1.5, 1.5), prob=1.0))
    out = t(dict(img=img.copy()))['img'][..., 0].astype(np.float64)
    x = np.arange(-11, 12, dtype=np.float64)  # 224 / 10 = 22.4 -> radius 11 -> 23 taps
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    expected = np.zeros((224, 224))
    expected[101:124, 101:124] = 1000.0 * np.outer(g, g)
    np.testing.assert_allclose(out, expected, atol=1e-3)
    flat = np.full((96, 96, 3), 100, np.uint8)
    zeros = build(dict(type='DetConGaussianBlur', sigma_range=(2.0, 2.0), padding='zeros'))
    reflect = build(dict(type='DetConGaussianBlur', sigma_range=(2.0, 2.0), padding='reflect'))
    z = zeros(dict(img=flat.copy()))['img']
    assert z[0, 0, 0] < 90 and z[48, 48, 0] == 100  # official zero padding darkens the border
    assert np.all(reflect(dict(img=flat.copy()))['img'] == 100)
    never = build(dict(type='DetConGaussianBlur', prob=0.0))
    np.testing.assert_array_equal(never(dict(img=img.copy()))['img'], img)


def test_solarize_threshold_matches_half():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    out = build(dict(type='Solarize', thr=128, prob=1.0))(dict(img=img.copy()))['img']
    x = img.astype(np.float64) / 255
    expected = np.where(x < 0.5, x, 1 - x) * 255  # dm_pix solarize at threshold 0.5
    np.testing.assert_allclose(out, expected, atol=0.51)


# --------------------------------------------------------------------------------------------
# Multi-view packing
# --------------------------------------------------------------------------------------------
def test_multi_view_with_mask_packs_and_checks():
    img, ids = painted_scene()
    mv = dict(type='MultiViewWithMask', num_views=[1, 1], transforms=[
        [dict(type='DetConRandomResizedCrop', scale=32)],
        [dict(type='DetConRandomResizedCrop', scale=32), dict(type='RandomFlip', prob=0.5)]])
    pipe = Compose([build(mv), build(dict(type='PackInputs'))])
    np.random.seed(0)
    packed = pipe(dict(img=img, gt_seg_map=ids, img_path='scene'))
    assert [tuple(v.shape) for v in packed['inputs']] == [(3, 32, 32), (3, 32, 32)]
    mask = packed['data_samples'].mask
    assert tuple(mask.shape) == (2, 32, 32) and mask.dtype == torch.int32
    assert set(mask.unique().tolist()) <= set(PALETTE)
    with pytest.raises(KeyError, match='gt_seg_map'):
        build(mv)(dict(img=img, img_path='scene'))
    sizes = dict(mv, transforms=[[dict(type='DetConRandomResizedCrop', scale=32)],
                                 [dict(type='DetConRandomResizedCrop', scale=64)]])
    with pytest.raises(ValueError, match='one size'):
        build(sizes)(dict(img=img, gt_seg_map=ids))


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------
def test_image_mask_dataset_paths_and_missing_root(tmp_path):
    for rel in ('n01/a.JPEG', 'n01/b.JPEG', 'n02/c.png'):
        write_png(str(tmp_path / 'train' / rel), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'train.txt').write_text('n01/a.JPEG 0\nn02/c.png 1\n')
    os.makedirs(tmp_path / 'masks_fh')
    ds = DATASETS.build(dict(type='ImageMaskDataset', data_root=str(tmp_path),
                             ann_file='meta/train.txt', data_prefix=dict(img_path='train/'),
                             mask_root='masks_fh/'))
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['img_path'] for i in infos] == [osp.join(str(tmp_path), 'train', 'n01/a.JPEG'),
                                              osp.join(str(tmp_path), 'train', 'n02/c.png')]
    assert [i['seg_map_path'] for i in infos] == [
        osp.join(str(tmp_path), 'masks_fh', 'n01', 'a.png'),
        osp.join(str(tmp_path), 'masks_fh', 'n02', 'c.png')]
    assert 'gt_label' not in infos[0]
    labelled = DATASETS.build(dict(type='ImageMaskDataset', data_root=str(tmp_path),
                                   ann_file='meta/train.txt', data_prefix='train/',
                                   with_label=True))
    assert labelled.get_data_info(1)['gt_label'] == 1
    scanned = DATASETS.build(dict(type='ImageMaskDataset', data_root=str(tmp_path),
                                  data_prefix='train/'))
    assert [osp.relpath(scanned.get_data_info(i)['img_path'], str(tmp_path / 'train'))
            for i in range(len(scanned))] == ['n01/a.JPEG', 'n01/b.JPEG', 'n02/c.png']
    with pytest.raises(FileNotFoundError, match=r'masks_nope.*generate_masks\.py --img-root'):
        DATASETS.build(dict(type='ImageMaskDataset', data_root=str(tmp_path),
                            data_prefix='train/', mask_root='masks_nope/'))
    ok = DATASETS.build(dict(type='ImageMaskDataset', data_root=str(tmp_path),
                             data_prefix='train/', mask_root='masks_nope/',
                             allow_missing_masks=True))
    assert len(ok) == 3


# --------------------------------------------------------------------------------------------
# The shapes data config, end to end
# --------------------------------------------------------------------------------------------
def test_shapes_config_pipeline_end_to_end(shapes_root):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/shapes_detcon.py'))
    assert cfg.train_dataloader.collate_fn.type == 'default_collate'
    assert cfg.data_preprocessor.type == 'DetConDataPreprocessor'
    views = cfg.train_dataloader.dataset.pipeline[2].transforms
    probs = [{s.type: s.get('prob') for s in v} for v in views]
    assert (probs[0]['DetConGaussianBlur'], probs[1]['DetConGaussianBlur']) == (1.0, 0.1)
    assert (probs[0]['Solarize'], probs[1]['Solarize']) == (0.0, 0.2)
    size = cfg.crop_size
    assert size % 32 == 0
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = shapes_root
    ds_cfg.num_images = 16
    load = ds_cfg.pipeline[1]
    assert load.type == 'LoadIdMap'
    load.mask_root = osp.join(shapes_root, 'precomputed')
    load.img_root = osp.join(shapes_root, 'train', 'images')
    # A "precomputed" 16-bit map for image 1 only (grid ids + 200, above FH's ids here but below
    # the config's num_mask_ids): it must be used instead of FH.
    grid = 200 + np.kron(np.arange(4).reshape(2, 2), np.ones((64, 64), np.int64))
    write_png(osp.join(shapes_root, 'precomputed', '000001.png'), grid.astype(np.uint16))
    ds = DATASETS.build(ds_cfg)
    np.random.seed(0)
    batch = default_collate([ds[i] for i in range(4)])
    inputs, samples = batch['inputs'], batch['data_samples']
    assert len(inputs) == 2 and all(tuple(x.shape) == (4, 3, size, size) for x in inputs)
    assert all('mask' not in s for s in samples)  # PackDetConInputs: one batched tensor instead
    masks = batch['masks'].long()
    assert tuple(masks.shape) == (4, 2, size, size)
    fh = cfg.fh_cfg
    for i in range(4):
        if i == 1:
            image_ids = set(range(200, 204))
        else:
            bgr = cv2.imread(osp.join(shapes_root, 'train', 'images', f'{i:06d}.png'))
            rgb = np.ascontiguousarray(bgr[..., ::-1])
            image_ids = set(np.unique(fh_reference(rgb, fh.scale, fh.sigma, fh.min_size)).tolist())
        assert set(masks[i].unique().tolist()) <= image_ids  # never relabelled per view


def test_shapes_instance_maps_through_load_id_map(shapes_root):
    ds = DATASETS.build(dict(type='ShapesDataset', data_root=shapes_root, split='train',
                             num_images=16, image_size=128, seed=0, with_masks='instance',
                             pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadIdMap')]))
    out = ds[3]
    stored = cv2.imread(osp.join(shapes_root, 'train', 'instance', '000003.png'),
                        cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.max() >= 1
    np.testing.assert_array_equal(out['gt_seg_map'], stored.astype(np.int64))
