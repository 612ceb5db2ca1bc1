"""ViewVisualizationHook: its pictures equal browse_views.py's for the same sample and seed, and a short
training run writes them through mmengine's visualizer (records made in dataloader workers included)."""
import glob
import importlib.util
import os.path as osp
import random

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from mmdetcon import visualization as vis
from mmdetcon.engine import ViewVisualizationHook
from mmdetcon.utils.cli import load_config

DETCON = 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py'
DETCO = 'configs/detco/detco_resnet18_1xb32-coslr-5e_shapes.py'


def _config(config: str, root: str, **options):
    return load_config(osp.join(ROOT, config), {'train_dataloader.dataset.data_root': root,
                                                'train_dataloader.dataset.num_images': 8, **options})


def _dataset(cfg):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    return DATASETS.build(cfg.train_dataloader.dataset)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_states() -> tuple:
    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone()


def _batch(dataset, index: int, seed: int, other: int) -> dict:
    """A collated batch whose first sample is ``index`` run through the whole pipeline under ``seed``."""
    from mmengine.dataset import default_collate
    _seed(seed)
    first = dataset[index]
    return default_collate([first, dataset[other]])


@pytest.mark.parametrize('config', [DETCON, DETCO], ids=['detcon', 'detco'])
def test_hook_pictures_equal_browse_views(config, shapes_root, tmp_path):
    cfg = _config(config, shapes_root)
    dataset = _dataset(cfg)
    vis.record_views(dataset)  # what the hook does before training
    name, index = osp.splitext(osp.basename(config))[0], 3
    num_samples = cfg.model.get('num_samples', 16)

    # browse_views.py --seed 0 draws sample i with seed i, pipeline and id draws alike.
    browsed = vis.run_pipeline(dataset, index, index)
    expected = vis.draw_capture(browsed, vis.picture_title(name, browsed), 32, num_samples, index)
    batch = _batch(dataset, index, index, other=5)
    assert batch['inputs'][0].dtype == torch.uint8 and batch['inputs'][0].shape[0] == 2
    cap = vis.capture_from_batch(batch, 0, dataset)
    if config == DETCON:
        assert [sorted(v) for v in cap.view_outputs] == [['crop_bbox', 'flip', 'flip_direction']] * 2
    else:
        assert [len(c) for c in cap.results['patch_cells']] == [9, 9]

    hook = ViewVisualizationHook(num_images=1, num_samples=num_samples)
    _seed(123)
    before = _rng_states()
    [(key, picture)] = hook.draw(batch, dataset, name)
    after = _rng_states()
    assert before[0] == after[0] and all(np.array_equal(a, b) for a, b in zip(before[1:], after[1:]))
    assert key == 'views_0' and picture.dtype == np.uint8 and picture.shape == expected.shape
    np.testing.assert_array_equal(picture, expected)
    # The comparison can fail: the same sample augmented under another seed is another picture.
    [(_, other)] = hook.draw(_batch(dataset, index, index + 1, other=5), dataset, name)
    assert other.shape != expected.shape or not np.array_equal(other, expected)

    if config == DETCON:  # and the CLI's file holds the same picture
        spec = importlib.util.spec_from_file_location('browse_views_tool',
                                                      osp.join(ROOT, 'tools', 'analysis', 'browse_views.py'))
        bv = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bv)
        bv.main(bv.parse_args([osp.join(ROOT, config), '--out', str(tmp_path / 'cli'), '--start', str(index),
                               '-n', '1', '--cfg-options', f'train_dataloader.dataset.data_root={shapes_root}',
                               'train_dataloader.dataset.num_images=8']))
        vis.save_png(picture, str(tmp_path / 'hook.png'))
        with Image.open(tmp_path / 'cli' / f'{index:06d}_{index:06d}.png') as a, \
                Image.open(tmp_path / 'hook.png') as b:
            np.testing.assert_array_equal(np.asarray(a.convert('RGB')), np.asarray(b.convert('RGB')))


def test_training_run_writes_pictures(shapes_root, tmp_path, monkeypatch):
    """The DetCon demo's own hook settings, 2 iterations with 2 forked workers: pictures at iterations 1
    and 2 (interval 2 here), each the RGB array the hook drew, with the crop windows recorded in workers."""
    from mmdetcon.registry import RUNNERS
    cfg = _config(DETCON, shapes_root, **{
        'train_dataloader.batch_size': 4, 'train_cfg.max_epochs': 1, 'train_dataloader.num_workers': 2,
        'train_dataloader.persistent_workers': False, 'default_hooks.checkpoint.interval': 100})
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'ViewVisualizationHook']
    assert len(hooks) == 1, 'the shapes demo configs turn the hook on'
    hooks[0]['interval'] = 2
    cfg.work_dir = str(tmp_path / 'work')
    drawn, captures = [], []
    draw, capture = ViewVisualizationHook.draw, vis.capture_from_batch

    def spy_draw(self, *args):
        out = draw(self, *args)
        drawn.append(out)
        return out

    def spy_capture(*args):
        captures.append(capture(*args))
        return captures[-1]

    monkeypatch.setattr(ViewVisualizationHook, 'draw', spy_draw)
    monkeypatch.setattr(vis, 'capture_from_batch', spy_capture)
    runner = RUNNERS.build(cfg)
    runner.train()
    files = sorted(glob.glob(osp.join(cfg.work_dir, '*', 'vis_data', 'vis_image', '*.png')))
    assert [osp.basename(f) for f in files] == ['views_0_1.png', 'views_0_2.png'], files
    assert len(drawn) == 2
    for path, [(key, picture)] in zip(files, drawn):
        with Image.open(path) as img:
            np.testing.assert_array_equal(np.asarray(img.convert('RGB')), picture)  # lossless, RGB
    assert all(len(c.view_outputs) == 2 and 'crop_bbox' in c.view_outputs[0] for c in captures)
    hook = next(h for h in runner.hooks if isinstance(h, ViewVisualizationHook))
    assert hook.pictures == 2 and 0 < hook.seconds < hook.train_seconds


def test_a_failed_picture_warns_and_training_goes_on():
    """A batch the hook cannot draw (here: no sample_idx to find the image) logs one warning, then no more tries."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    from mmpretrain.structures import DataSample
    warnings = []
    logger = MMLogger.get_instance('view_hook_failure_test')
    logger.warning = warnings.append
    added = []
    runner = SimpleNamespace(iter=0, logger=logger, train_dataloader=SimpleNamespace(dataset=None),
                             visualizer=SimpleNamespace(add_image=lambda *a, **k: added.append(a)))
    hook = ViewVisualizationHook(interval=1, num_samples=16)
    batch = dict(inputs=[torch.zeros(1, 3, 32, 32, dtype=torch.uint8)] * 2, data_samples=[DataSample()])
    hook.after_train_iter(runner, 0, batch)
    runner.iter = 1
    hook.after_train_iter(runner, 1, batch)
    assert hook.failed and hook.pictures == 0 and not added
    assert len(warnings) == 1 and 'drawing failed at iteration 1' in warnings[0] and 'sample_idx' in warnings[0]
