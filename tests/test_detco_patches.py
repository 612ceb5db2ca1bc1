"""DetCo views: local patch sets (grid, shuffle, per-cell crops), view list, hue-safe colour jitter."""
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
from mmengine.registry import DefaultScope

from mmdetcon.datasets.transforms import DetCoLocalPatches, shift_hue
from mmdetcon.registry import TRANSFORMS

PHOTOMETRIC = [
    dict(type='RandomApply',
         transforms=[dict(type='HueSafeColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    # Nested transform configs (RandomApply) resolve names in the default scope, as under a Runner.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_patches_lie_in_distinct_cells_at_the_recorded_slots():
    # Full-image square crop of a 96 px image: the crop is the image itself, so every patch can be
    # located exactly.
    np.random.seed(0)
    t = DetCoLocalPatches(crop_size=96, cell_size=32, patch_size=24, crop_scale=(1.0, 1.0),
                          crop_ratio=(1.0, 1.0), backend='cv2')
    img = _noise(96, 96)
    out = t(dict(img=img.copy()))
    assert len(out['img']) == 9 and sorted(out['patch_cells'].tolist()) == list(range(9))
    assert out['patch_cells'].tolist() != list(range(9))  # shuffled (fixed seed)
    offsets = []
    for patch, cell in zip(out['img'], out['patch_cells']):
        assert patch.shape == (24, 24, 3)
        hits = [(r, c, y, x) for r in range(3) for c in range(3) for y in range(32 - 24 + 1)
                for x in range(32 - 24 + 1)
                if np.array_equal(img[32 * r + y:32 * r + y + 24, 32 * c + x:32 * c + x + 24], patch)]
        assert len(hits) == 1 and 3 * hits[0][0] + hits[0][1] == cell
        offsets.append(hits[0][2:])
    assert len(set(offsets)) > 1  # offsets drawn per cell


@pytest.mark.parametrize('size', [64, 100, 300])
def test_default_patch_set_for_input_sizes(size):
    np.random.seed(size)
    t = TRANSFORMS.build(dict(type='DetCoLocalPatches', transforms=PHOTOMETRIC))
    out = t(dict(img=_noise(size, size + 7, seed=size)))
    patches = out['img']
    assert len(patches) == 9 and all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p in patches)
    assert sorted(out['patch_cells'].tolist()) == list(range(9))
    assert len({p.tobytes() for p in patches}) == 9


def test_too_small_input_is_rejected_with_its_size():
    t = DetCoLocalPatches()
    with pytest.raises(ValueError, match=r'img/x\.png is 63x80 px.*64 px'):
        t(dict(img=_noise(63, 80), img_path='img/x.png'))


def test_size_consistency_is_validated():
    with pytest.raises(ValueError, match='grid_size x cell_size'):
        DetCoLocalPatches(crop_size=96, cell_size=30)
    with pytest.raises(ValueError, match='patch_size 40 must not exceed cell_size 32'):
        DetCoLocalPatches(crop_size=96, cell_size=32, patch_size=40)


def test_views_flat_list_and_independent_sets():
    np.random.seed(1)
    views = TRANSFORMS.build(dict(
        type='DetCoViews',
        global_transforms=[dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.2, 1.), backend='pillow')]
        + PHOTOMETRIC,
        local_transforms=[dict(type='DetCoLocalPatches', transforms=PHOTOMETRIC, crop_size=48, cell_size=16,
                               patch_size=12)]))
    pack = TRANSFORMS.build(dict(type='PackInputs'))
    out = views(dict(img=_noise(90, 70)))
    assert [v.shape for v in out['img']] == [(64, 64, 3)] * 2 + [(12, 12, 3)] * 18
    cells_q, cells_k = out['patch_cells']
    assert cells_q.tolist() != cells_k.tolist()  # fresh permutation per set (fixed seed)
    packed = pack(out)
    assert len(packed['inputs']) == 20 and tuple(packed['inputs'][2].shape) == (3, 12, 12)


def test_shift_hue_matches_mmcv_for_positive_shifts_and_wraps_negative_ones():
    img = _noise(8, 8, seed=3)
    for hue in (0.05, 0.3):
        assert np.array_equal(shift_hue(img, hue), mmcv.adjust_hue(img, hue, backend='cv2'))
    # Negative shift (mmcv raises OverflowError here on numpy 2): the hue of saturated, bright pixels
    # turns by int(-0.1 * 255) = -25 steps of the 256-step wheel (BGR<->HSV rounding: a few steps).
    rng = np.random.default_rng(4)
    hsv = np.stack([rng.integers(0, 256, (16, 16)), rng.integers(200, 256, (16, 16)),
                    rng.integers(200, 256, (16, 16))], axis=-1).astype(np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL)
    before = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV_FULL)[..., 0].astype(int)
    after = cv2.cvtColor(shift_hue(bgr, -0.1), cv2.COLOR_BGR2HSV_FULL)[..., 0].astype(int)
    turn = (after - before) % 256
    assert np.all(np.minimum(np.abs(turn - 231), 256 - np.abs(turn - 231)) <= 3)


@pytest.mark.parametrize('name', ['detco_resnet50_8xb32-coslr-200e_in1k', 'detco-aa_resnet50_8xb32-coslr-200e_in1k',
                                  'detco_resnet50_8xb32-coslr-800e_in1k', 'detco_resnet18_1xb32-coslr-5e_shapes'])
def test_config_pipelines_yield_20_views(name):
    from mmengine.config import Config
    from mmengine.dataset import Compose
    cfg = Config.fromfile(osp.join(osp.dirname(__file__), '..', 'configs', 'detco', f'{name}.py'))
    global_size = 96 if 'shapes' in name else 224
    patch = 24 if 'shapes' in name else 64
    np.random.seed(0)
    out = Compose(cfg.train_dataloader.dataset.pipeline[1:])(dict(img=_noise(150, 120)))  # after loading
    assert [tuple(x.shape) for x in out['inputs']] == [(3, global_size, global_size)] * 2 + [(3, patch, patch)] * 18
    assert cfg.model.queue_len % cfg.train_dataloader.batch_size == 0
    assert cfg.model.neck.num_patches == 9
