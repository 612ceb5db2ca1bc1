"""tools/analysis/browse_views.py and the drawing code it runs (mmdetcon.visualization): PNGs for the shapes
demo configs, id colours, captured id maps."""
import importlib.util
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_tool
from mmdetcon import visualization as vis
from mmdetcon.utils.cli import UserError

TOOL = osp.join(ROOT, 'tools', 'analysis', 'browse_views.py')
DETCON = 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py'
DETCO = 'configs/detco/detco_resnet18_1xb32-coslr-5e_shapes.py'


def _tool():
    spec = importlib.util.spec_from_file_location('browse_views_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(config: str, root: str) -> list:
    """--cfg-options pointing the config's dataset (and a LoadIdMap with its own roots) at ``root``."""
    from mmengine.config import Config
    opts = [f'train_dataloader.dataset.data_root={root}', 'train_dataloader.dataset.num_images=4']
    pipeline = Config.fromfile(osp.join(ROOT, config)).train_dataloader.dataset.pipeline
    for i, step in enumerate(pipeline):
        if step['type'] == 'LoadIdMap' and step.get('mask_root') is not None:
            key = f'train_dataloader.dataset.pipeline.{i}'
            opts += [f'{key}.mask_root={root}/train/masks_fh', f'{key}.img_root={root}/train/images']
    return opts


def _check_png(path: str, min_w: int, min_h: int) -> None:
    assert 10_000 < osp.getsize(path) < 1_000_000, (path, osp.getsize(path))
    with Image.open(path) as img:
        w, h = img.size
        assert w >= min_w and h >= min_h, (path, img.size)
        pixels = np.asarray(img.convert('RGB'))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a picture, not a blank canvas


def test_detcon_cli_writes_png(shapes_root, tmp_path):
    out = tmp_path / 'detcon'
    proc = run_tool(['tools/analysis/browse_views.py', DETCON, '--out', str(out), '-n', '1',
                     '--cfg-options', *_options(DETCON, shapes_root)], timeout=300)
    files = sorted(os.listdir(out))
    assert files == ['000000_000000.png'], (files, proc.stderr[-2000:])
    _check_png(str(out / files[0]), 1000, 500)


def test_detco_png(shapes_root, tmp_path):
    bv = _tool()
    out = tmp_path / 'detco'
    bv.main(bv.parse_args([DETCO, '--out', str(out), '-n', '1', '--start', '2',
                           '--cfg-options', *_options(DETCO, shapes_root)]))
    files = sorted(os.listdir(out))
    assert files == ['000002_000002.png']
    _check_png(str(out / files[0]), 800, 500)


def test_detcon_capture_keeps_image_ids(shapes_root):
    """The captured image-level map is the mask source's output, and each view's ids come from it."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    from mmdetcon.utils.cli import load_config
    bv = _tool()
    args = bv.parse_args([DETCON, '--out', 'unused', '--cfg-options', *_options(DETCON, shapes_root)])
    cfg = load_config(osp.join(ROOT, DETCON), args.cfg_options)
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    cap = vis.run_pipeline(dataset, 1, seed=3)
    assert vis.layout_of(cap.results) == 'detcon'
    assert cap.ids.shape == cap.image.shape[:2] == (128, 128)
    masks = np.asarray(cap.results['mask'])
    assert masks.shape == (2, 96, 96)
    assert set(np.unique(masks).tolist()) <= set(np.unique(cap.ids).tolist())
    # Each view's id map is the image map under that view's recorded crop window (nearest resize
    # with half-pixel centres, then the flip), computed here independently of the transforms.
    assert len(cap.view_outputs) == 2
    for v, out in enumerate(cap.view_outputs):
        x0, y0, x1, y1 = (int(c) for c in out['crop_bbox'])
        rows = y0 + (np.arange(96) * 2 + 1) * (y1 - y0) // (2 * 96)
        cols = x0 + (np.arange(96) * 2 + 1) * (x1 - x0) // (2 * 96)
        expect = cap.ids[np.ix_(rows, cols)]
        if out.get('flip'):
            assert out['flip_direction'] == 'horizontal'
            expect = expect[:, ::-1]
        np.testing.assert_array_equal(masks[v], expect)
    # The same seed gives the same sample.
    again = vis.run_pipeline(dataset, 1, seed=3)
    np.testing.assert_array_equal(np.asarray(again.results['mask']), masks)


def test_grid_ids_follow_the_plurality_rule():
    masks = np.zeros((2, 64, 64), np.int32)
    masks[0, :, 40:] = 7           # cells (r, 1): 24 of 32 columns are id 7 -> 7
    masks[1, :33, :] = 5           # cells (0, c) all 5; row 1 gets 1 row of 5 -> 0
    grids = vis.grid_ids(masks, 32, num_samples=64, seed=0)
    np.testing.assert_array_equal(grids[0].cells, [[0, 7], [0, 7]])
    np.testing.assert_array_equal(grids[1].cells, [[5, 5], [0, 0]])
    assert set(grids[0].drawn.tolist()) == {0, 7} and set(grids[1].drawn.tolist()) == {0, 5}
    with pytest.raises(ValueError, match='stride-24'):
        vis.grid_ids(masks, 24, 16, 0)


def test_id_colour_is_fixed_per_id():
    first = [vis.id_colour(i) for i in range(50)]
    assert [vis.id_colour(i) for i in range(50)] == first
    fresh = importlib.util.spec_from_file_location('fresh_id_colours', vis.id_colours.__file__)
    module = importlib.util.module_from_spec(fresh)
    fresh.loader.exec_module(module)
    assert [module.id_colour(i) for i in range(50)] == first  # a fresh import: same colours
    assert len(set(first)) == 50
    assert all(0 <= ch <= 1 for c in first for ch in c)
    # Colourised maps: a pixel's colour depends only on its id, whatever else the map holds.
    a = np.array([[3, 3, 9], [12, 9, 3]])
    b = np.array([[40, 9], [3, 0]])
    ca, cb = vis.colourise(a), vis.colourise(b)
    np.testing.assert_allclose(ca[0, 2], cb[0, 1])
    np.testing.assert_allclose(ca[0, 0], cb[1, 0])
    np.testing.assert_allclose(ca[1, 2], np.array(vis.id_colour(3), np.float32))
    assert not np.allclose(ca[0, 0], ca[0, 2])


def test_detco_without_recorded_cells(tmp_path):
    """A local-patch transform that records no cells: slot order only, still one PNG."""
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(2)]
    imgs += [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(18)]
    cap = vis.Capture(0, 'x.png', rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                     dict(img=imgs, patch_cells=[None, None]), num_global_views=2)
    assert vis.layout_of(cap.results) == 'detco'
    vis.save_png(vis.draw_capture(cap, 'test', dpi=60), str(tmp_path / 'a.png'))
    _check_png(str(tmp_path / 'a.png'), 500, 300)


def test_bad_input_errors(tmp_path):
    bv = _tool()
    missing = str(tmp_path / 'nope.py')
    with pytest.raises(UserError, match='nope.py'):
        bv.main(bv.parse_args([missing, '--out', str(tmp_path)]))
    with pytest.raises(UserError, match='-n must be at least 1'):
        bv.main(bv.parse_args([DETCON, '--out', str(tmp_path), '-n', '0']))
    proc = run_tool(['tools/analysis/browse_views.py', missing, '--out', str(tmp_path)], check=False,
                    timeout=120)
    assert proc.returncode == 1 and 'config file not found' in proc.stderr and missing in proc.stderr
