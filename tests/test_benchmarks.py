"""Downstream benchmark configs build, and an exported backbone reaches their models unchanged."""
import glob
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, run_tool

try:
    import mmcv.ops  # noqa: F401  (mmdet needs the compiled ops of full mmcv)
    NO_OPS = None
except ImportError as e:
    NO_OPS = f'mmdet needs full mmcv with compiled ops (bash tools/install_mmcv.sh): {e}'
needs_mmdet = pytest.mark.skipif(NO_OPS is not None, reason=str(NO_OPS))

BENCH = osp.join(ROOT, 'configs', 'benchmarks')
DET_CONFIGS = sorted(glob.glob(osp.join(BENCH, 'mmdet', '*.py')))
CLS_CONFIGS = sorted(glob.glob(osp.join(BENCH, 'mmpretrain', '*.py')))
SHAPES_DET = osp.join(BENCH, 'mmdet', 'mask-rcnn_r18_fpn_1xb4-2e_shapes.py')
SHAPES_CLS = osp.join(BENCH, 'mmpretrain', 'resnet18_1xb64-linear-multilabel-coslr-20e_shapes.py')
C4_COCO = osp.join(BENCH, 'mmdet', 'mask-rcnn_r50-c4_ms-1x_coco.py')


def _name(path):
    return osp.relpath(path, BENCH)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MMDETCON_CACHE', str(tmp_path / 'cache'))


@pytest.fixture
def weights_only_loads(monkeypatch):
    """Records the ``weights_only`` argument of every ``torch.load`` call."""
    seen = []
    real_load = torch.load

    def load(*args, **kwargs):
        seen.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', load)
    return seen


def _build(cfg: Config):
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') and 'data_preprocessor' not in model_cfg:
        model_cfg['data_preprocessor'] = cfg.data_preprocessor
    return MODELS.build(model_cfg)


def test_benchmark_configs_exist():
    names = {_name(p) for p in DET_CONFIGS + CLS_CONFIGS}
    for required in ('mmdet/mask-rcnn_r50_fpn_ms-1x_coco.py', 'mmdet/mask-rcnn_r50-c4_ms-1x_coco.py',
                     'mmdet/faster-rcnn_r50-c4_ms-24k_voc0712.py', 'mmdet/mask-rcnn_r18_fpn_1xb4-2e_shapes.py',
                     'mmpretrain/resnet50_8xb512-linear-lars-coslr-90e_in1k.py',
                     'mmpretrain/resnet50_8xb32-linear-steplr-100e_in1k.py'):
        assert required in names


@pytest.mark.parametrize('path', CLS_CONFIGS, ids=_name)
def test_linear_eval_config_trains_only_the_classifier(path):
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import TRANSFORMS
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='')  # exports carry no prefix
    model = _build(cfg)
    model.train()
    head = cfg.model.head
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == head.in_channels * head.num_classes + head.num_classes
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for step in cfg.train_dataloader.dataset.pipeline:
        TRANSFORMS.build(step)
    build_optim_wrapper(model, cfg.optim_wrapper)


@needs_mmdet
@pytest.mark.parametrize('path', DET_CONFIGS, ids=_name)
def test_detection_config_builds(path):
    from mmcv.cnn import build_norm_layer  # noqa: F401  (mmdet models need full mmcv)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet' and 'mmdetcon' in cfg.custom_imports['imports']
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    model = _build(cfg)
    backbone = model.backbone
    # Fine-tuned end to end: no frozen stage, BN layers train (SyncBN as configured).
    assert backbone.frozen_stages == -1 and not backbone.norm_eval
    assert all(p.requires_grad for p in backbone.parameters())
    assert isinstance(backbone.bn1, torch.nn.SyncBatchNorm)
    if '-c4_' in path:
        shared = model.roi_head.shared_head
        assert type(shared).__name__ == 'ResLayerExtraNorm' and not shared.norm_eval
        assert isinstance(shared.norm, torch.nn.SyncBatchNorm)
        assert cfg.model.roi_head.shared_head.init_cfg.type == 'Pretrained'
        assert model.data_preprocessor.channel_conversion  # RGB, PyTorch-style statistics
    if 'voc0712' in path:
        assert model.roi_head.bbox_head.num_classes == 20
    if 'shapes' in path:
        assert backbone.depth == 18 and model.roi_head.bbox_head.num_classes == 8
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[field].collate_fn == dict(type='pseudo_collate')  # images of different sizes


def _random_resnet(depth: int, path: str) -> dict:
    from mmpretrain.models import ResNet
    torch.manual_seed(depth)
    net = ResNet(depth=depth)
    for m in net.modules():  # non-default BN statistics, so that a missed buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in state.items()}, 'meta': {'epoch': 1}}, path)
    return state


@needs_mmdet
def test_exported_backbone_loads_into_mmdet_with_weights_only(tmp_path, weights_only_loads):
    ckpt, out = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'r18.pth')
    source = _random_resnet(18, ckpt)
    run_tool(['tools/model_converters/extract_backbone.py', ckpt, out])

    cfg = Config.fromfile(SHAPES_DET)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': out})
    model = _build(cfg)
    model.init_weights()
    loaded = model.backbone.state_dict()
    for k, v in source.items():
        assert torch.equal(loaded[k], v), k
    assert weights_only_loads and all(w is True for w in weights_only_loads)


@needs_mmdet
def test_c4_loads_res5_into_the_roi_head(tmp_path, weights_only_loads):
    path = str(tmp_path / 'r50.pth')
    ckpt = str(tmp_path / 'epoch_1.pth')
    source = _random_resnet(50, ckpt)
    run_tool(['tools/model_converters/extract_backbone.py', ckpt, path])
    cfg = Config.fromfile(C4_COCO)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': path,
                         'model.roi_head.shared_head.init_cfg.checkpoint': path})
    model = _build(cfg)
    model.init_weights()
    backbone, shared = model.backbone.state_dict(), model.roi_head.shared_head.state_dict()
    for k, v in source.items():
        where = shared if k.startswith('layer4.') else backbone
        assert torch.equal(where[k], v), k
    assert weights_only_loads and all(w is True for w in weights_only_loads)


def test_multilabel_shapes_labels_are_the_classes_painted(shapes_root):
    from mmdetcon.datasets import ShapesMultiLabelDataset
    ds = ShapesMultiLabelDataset(data_root=shapes_root, split='train', num_images=16)
    assert len(ds) == 16
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        semantic = cv2.imread(osp.join(shapes_root, 'train', 'semantic', f'{i:06d}.png'), cv2.IMREAD_UNCHANGED)
        painted = sorted(int(c) - 1 for c in np.unique(semantic) if c != 0)
        assert list(info['gt_label']) == painted


def test_linear_probe_backward_reaches_only_the_head(shapes_root, tmp_path):
    from mmengine.dataset import default_collate
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(SHAPES_CLS)
    weights = str(tmp_path / 'r18.pth')
    torch.save(_random_resnet(18, str(tmp_path / 'ckpt.pth')), weights)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': weights})
    model = _build(cfg)
    model.init_weights()
    assert torch.equal(model.backbone.conv1.weight, torch.load(weights, weights_only=True)['conv1.weight'])
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.update(data_root=shapes_root, num_images=4)
    ds = DATASETS.build(ds_cfg)
    batch = model.data_preprocessor(default_collate([ds[i] for i in range(4)]), training=True)
    model.train()
    loss = model(**batch, mode='loss')['loss']
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.fc.weight.grad.abs().sum() > 0


@needs_mmdet
def test_shapes_coco_dataset_uses_the_first_images(shapes_root):
    import mmdetcon.datasets.shapes_coco  # noqa: F401  (registers ShapesCocoDataset)
    from mmdet.registry import DATASETS
    ds = DATASETS.build(dict(type='ShapesCocoDataset', data_root=shapes_root, split='train', num_images=5,
                             test_mode=True, pipeline=[]))
    assert [d['img_id'] for d in ds.data_list] == list(range(5))
    for info in ds.data_list:
        instance = cv2.imread(osp.join(shapes_root, 'train', 'instance', osp.basename(info['img_path'])),
                              cv2.IMREAD_UNCHANGED)
        assert len(info['instances']) == len(np.unique(instance[instance > 0]))


@needs_mmdet
def test_shapes_detection_demo_trains_and_evaluates(tmp_path):
    data = str(tmp_path / 'shapes')
    weights = str(tmp_path / 'r18.pth')
    torch.save(_random_resnet(18, str(tmp_path / 'ckpt.pth')), weights)
    work = str(tmp_path / 'work')
    opts = [f'model.backbone.init_cfg.checkpoint={weights}', 'train_cfg.max_epochs=1',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'val_dataloader.batch_size=2',
            f'train_dataloader.dataset.data_root={data}', 'train_dataloader.dataset.num_images=4',
            f'val_dataloader.dataset.data_root={data}', 'val_dataloader.dataset.num_images=2',
            f'val_evaluator.ann_file={data}/annotations/instances_val.json']
    run_tool(['tools/train.py', SHAPES_DET, '--work-dir', work, '--cfg-options', *opts])
    logs = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    records = [json.loads(line) for line in open(logs[0])]
    losses = [r for r in records if 'loss' in r]
    assert len(losses) >= 1 and all(np.isfinite(r['loss']) for r in losses)
    assert any('coco/bbox_mAP' in r and 'coco/segm_mAP' in r for r in records)
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


@needs_mmdet
def test_subset_coco_metric_scores_only_the_images_used(shapes_root):
    """Exact predictions (read from the instance/semantic PNGs, not the json) of 4 of 16 images give AP 1."""
    import mmdetcon.datasets.shapes_coco  # noqa: F401  (registers SubsetCocoMetric)
    from mmdet.registry import METRICS

    from mmdetcon.datasets import SHAPES_CLASSES
    samples = []
    for i in range(4):
        instance = cv2.imread(osp.join(shapes_root, 'train', 'instance', f'{i:06d}.png'), cv2.IMREAD_UNCHANGED)
        semantic = cv2.imread(osp.join(shapes_root, 'train', 'semantic', f'{i:06d}.png'), cv2.IMREAD_UNCHANGED)
        ids = [k for k in np.unique(instance) if k != 0]
        masks = np.stack([instance == k for k in ids])
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels = [int(semantic[m][0]) - 1 for m in masks]
        samples.append(dict(img_id=i, ori_shape=instance.shape, pred_instances=dict(
            bboxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.ones(len(ids)),
            labels=torch.tensor(labels), masks=torch.from_numpy(masks))))
    ann_file = osp.join(shapes_root, 'annotations', 'instances_train.json')
    scores = {}
    for kind in ('SubsetCocoMetric', 'CocoMetric'):
        metric = METRICS.build(dict(type=kind, ann_file=ann_file, metric=['bbox', 'segm']))
        metric.dataset_meta = dict(classes=SHAPES_CLASSES)
        metric.process({}, [dict(s, pred_instances=dict(s['pred_instances'])) for s in samples])
        scores[kind] = metric.compute_metrics(metric.results)
    assert scores['SubsetCocoMetric']['bbox_mAP'] == pytest.approx(1.0)
    assert scores['SubsetCocoMetric']['segm_mAP'] == pytest.approx(1.0)
    assert scores['CocoMetric']['bbox_mAP'] < 0.9  # the other 12 images' objects count as missed
