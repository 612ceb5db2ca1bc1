"""DetCon's mask path without host syncs: it compiles with ``fullgraph=True`` (no graph break, so no
``.item()``, data-dependent branch or shape) and matches eager; the id limit is enforced by the data
pipeline; the views' id maps are collated as one tensor and moved with ``non_blocking``."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmdetcon  # noqa: F401  (registers the transforms and models)
from conftest import ROOT
from mmdetcon.models.algorithms.detcon import _DetConBase
from mmdetcon.models.utils.mask_pooling import downsample_masks, pool_masks, sample_mask_ids
from mmdetcon.registry import MODELS, TRANSFORMS
from mmdetcon.utils.masks_io import save_id_map


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Nested view transforms resolve names in the default scope, as in a Runner."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def mask_path(masks: torch.Tensor, feats: torch.Tensor, num_ids: int):
    """downsample -> sample -> pool for both views, and the logged statistics, as the model runs them
    (``masks`` [B,2,H,W], ``feats`` [2,B,C,h,w])."""
    cells, ids, pooled = [], [], []
    for v in range(2):
        cells.append(downsample_masks(masks[:, v], tuple(feats.shape[-2:]), num_ids))
        ids.append(sample_mask_ids(cells[-1], 4))
        pooled.append(pool_masks(feats[v], cells[-1], ids[-1]))
    return cells, ids, pooled, _DetConBase._stats(cells, ids)


def _tiny_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(-1, 9, (3, 2, 4, 4), generator=g, dtype=torch.int32)  # -1: spare slot
    masks = coarse.repeat_interleave(16, 2).repeat_interleave(16, 3)  # [3,2,64,64]
    return masks, torch.randn(2, 3, 5, 2, 2, generator=g)


@pytest.mark.parametrize('num_ids', [8, 1 << 16])  # dense count table / per-cell sort
def test_mask_path_compiles_without_graph_breaks_and_matches_eager(num_ids):
    masks, feats = _tiny_batch()
    torch._dynamo.reset()
    compiled = torch.compile(mask_path, fullgraph=True, backend='eager')
    for seed in (0, 1):
        torch.manual_seed(seed)
        want = mask_path(masks, feats, num_ids)
        torch.manual_seed(seed)
        got = compiled(masks, feats, num_ids)
        for a, b in zip(torch.utils._pytree.tree_leaves(want), torch.utils._pytree.tree_leaves(got)):
            assert torch.equal(a, b)
    # A graph break is where eager code would wait for the device: there is none.
    explained = torch._dynamo.explain(mask_path)(masks, feats, num_ids)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    # The detector does see a host read (what mask_pooling did before: size a table by ids.max()).
    read = torch._dynamo.explain(lambda x: torch.zeros(int(x.max()) + 1).sum())(masks)
    assert read.graph_break_count >= 1


def _model_cfg(num_mask_ids: int = 16) -> dict:
    return dict(
        type='DetConS', num_samples=4, num_mask_ids=num_mask_ids,
        backbone=dict(type='ResNet', depth=18, out_indices=(3, ), norm_cfg=dict(type='BN')),
        neck=dict(type='DetConNeck', in_channels=512, hid_channels=32, out_channels=16,
                  norm_cfg=dict(type='BN1d')),
        head=dict(type='DetConHead', loss=dict(type='DetConLoss', simclr=True)),
        data_preprocessor=dict(type='DetConDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True))


def _pipeline(num_mask_ids: int = 16) -> Compose:
    view = [dict(type='DetConRandomResizedCrop', scale=64), dict(type='RandomFlip', prob=0.5)]
    return Compose([TRANSFORMS.build(t) for t in (
        dict(type='GridMask', grid_size=3),
        dict(type='MultiViewWithMask', num_views=[1, 1], transforms=[view, view],
             num_mask_ids=num_mask_ids),
        dict(type='PackDetConInputs'))])


def test_id_limit_is_checked_where_the_ids_are_made(tmp_path):
    img = np.zeros((40, 48, 3), np.uint8)
    ids = np.zeros((40, 48), np.int64)
    ids[:, 24:] = 255
    path = str(tmp_path / 'seg' / 'a.png')
    save_id_map(path, ids)
    load = TRANSFORMS.build(dict(type='LoadIdMap'))
    views = dict(type='MultiViewWithMask', num_views=2, num_mask_ids=256,
                 transforms=[[dict(type='DetConRandomResizedCrop', scale=32)]])
    pipe = Compose([load, TRANSFORMS.build(views)])
    out = pipe(dict(img=img, img_path='a.jpg', seg_map_path=path))  # id M - 1 = 255 passes
    assert out['mask'].max() <= 255
    ids[0, 0] = 256  # stored as a uint16 PNG, one id over the limit
    save_id_map(path, ids)
    with pytest.raises(ValueError, match=r'a\.jpg \(id map .*a\.png\): segment id 256 .*num_mask_ids=256'):
        pipe(dict(img=img, img_path='a.jpg', seg_map_path=path))
    neg = np.zeros((40, 48), np.int32)
    neg[5, 5] = -1
    # The same check names the map LoadIdMap found through mask_root / img_root.
    mirrored = TRANSFORMS.build(dict(type='LoadIdMap', mask_root=str(tmp_path / 'seg'),
                                     img_root=str(tmp_path / 'img')))
    with pytest.raises(ValueError, match=r'id map .*seg/a\.png\): segment id 256'):
        Compose([mirrored, TRANSFORMS.build(views)])(dict(img=img, img_path=str(tmp_path / 'img' / 'a.jpg')))
    with pytest.raises(ValueError, match='segment id -1'):
        TRANSFORMS.build(views)(dict(img=img, gt_seg_map=neg, img_path='b.jpg'))
    with pytest.raises(ValueError, match='num_mask_ids'):
        TRANSFORMS.build(dict(views, num_mask_ids=0))
    with pytest.raises(ValueError, match='do not fit'):
        TRANSFORMS.build(dict(views, mask_dtype='int8'))  # 65536 ids by default


def test_id_maps_collate_to_one_tensor_moved_non_blocking(monkeypatch):
    MessageHub.get_current_instance().update_info('max_iters', 10)
    pipe = _pipeline()
    rng = np.random.default_rng(0)
    np.random.seed(0)
    packed = [pipe(dict(img=rng.integers(0, 256, (70, 80, 3), dtype=np.uint8), img_path=f'{i}.png'))
              for i in range(3)]
    batch = default_collate(packed)
    assert isinstance(batch['masks'], torch.Tensor) and batch['masks'].dtype == torch.int32
    assert tuple(batch['masks'].shape) == (3, 2, 64, 64)
    assert all('mask' not in ds for ds in batch['data_samples'])
    for i, p in enumerate(packed):
        assert torch.equal(batch['masks'][i], p['masks'])

    model = MODELS.build(_model_cfg())
    moves = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        moves.append((self.data_ptr(), kwargs.get('non_blocking')))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', spy)
    data = model.data_preprocessor(batch, True)
    monkeypatch.setattr(torch.Tensor, 'to', real_to)
    mask_moves = [nb for ptr, nb in moves if ptr == batch['masks'].data_ptr()]
    assert mask_moves == [True]  # one copy of the whole [B, 2, H, W] tensor, non_blocking
    assert torch.equal(data['masks'], batch['masks'])

    # The batched path trains exactly as the per-sample DataSample.mask path did.
    torch.manual_seed(0)
    batched = model.loss(data['inputs'], data['data_samples'], masks=data['masks'])
    legacy = [DataSample(mask=m) for m in batch['masks']]
    torch.manual_seed(0)
    per_sample = model.loss(data['inputs'], legacy)
    for key in per_sample:
        torch.testing.assert_close(batched[key], per_sample[key], rtol=0, atol=0)
    log = model.train_step(batch, _sgd(model))
    assert torch.isfinite(log['loss'])


def _sgd(model):
    from mmengine.optim import OptimWrapper
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))


def test_model_mask_path_has_no_graph_break():
    """The model's own encode step (backbone, downsample, sample, pooling neck) and its statistics."""
    model = MODELS.build(_model_cfg())
    model.train()
    masks, _ = _tiny_batch()
    views = list(torch.randn(2, 3, 3, 64, 64))

    def encode(views, masks):
        cells, ids, proj = model._encode_views(views, None, masks)
        return proj, model._stats(cells, ids)

    torch._dynamo.reset()
    explained = torch._dynamo.explain(encode)(views, masks)
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_shipped_detcon_configs_batch_pin_and_agree_on_the_limit():
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', 'detcon', '*.py'))):
        cfg = Config.fromfile(path)
        loader = cfg.train_dataloader
        types = [t['type'] for t in loader.dataset.pipeline]
        views = next(t for t in loader.dataset.pipeline if t['type'] == 'MultiViewWithMask')
        assert types[-1] == 'PackDetConInputs', path
        assert cfg.data_preprocessor.type == 'DetConDataPreprocessor', path
        assert loader.pin_memory is True, path
        assert cfg.model.num_mask_ids == views.num_mask_ids, path
