"""Downstream benchmark configs build, and an exported backbone reaches their models unchanged."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import ROOT

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


@pytest.fixture(autouse=True)
def restore_default_scope():
    """Tests here switch the global default scope to mmdet; other test files expect it back."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


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
        # PyTorch-style ResNet: RGB statistics with unit-variance scaling (the caffe base uses BGR, std 1).
        assert model.data_preprocessor.mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])
        assert model.data_preprocessor.std.flatten().tolist() == pytest.approx([58.395, 57.12, 57.375])
        assert cfg.model.data_preprocessor.bgr_to_rgb
    if 'voc0712' in path:
        assert model.roi_head.bbox_head.num_classes == 20
    if 'shapes' in path:
        assert backbone.depth == 18 and model.roi_head.bbox_head.num_classes == 8
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[field].collate_fn == dict(type='pseudo_collate')  # images of different sizes


def _export(ckpt: str, out: str) -> None:
    """tools/model_converters/extract_backbone.py, in-process (its CLI is covered by test_extract_backbone)."""
    import argparse
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'extract_backbone', osp.join(ROOT, 'tools', 'model_converters', 'extract_backbone.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(argparse.Namespace(checkpoint=ckpt, out=out, layout='mmpretrain', prefix='backbone.', debug=False))


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
    _export(ckpt, out)

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
    _export(ckpt, path)
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
    from mmdetcon.datasets.shapes_coco import ShapesCocoDataset
    ds = ShapesCocoDataset(data_root=shapes_root, split='train', num_images=5, test_mode=True, pipeline=[])
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [d['img_id'] for d in infos] == list(range(5))
    for info in infos:
        instance = cv2.imread(osp.join(shapes_root, 'train', 'instance', osp.basename(info['img_path'])),
                              cv2.IMREAD_UNCHANGED)
        assert len(info['instances']) == len(np.unique(instance[instance > 0]))


@needs_mmdet
def test_shapes_detection_demo_trains_from_the_export_and_predicts(shapes_root, tmp_path):
    """One training step of the demo (pipeline -> loaded backbone -> losses -> backward) and one prediction.

    Proposal and RoI counts are cut so that the RoI heads (most of the CPU time) stay small; the whole
    `tools/train.py` run is too slow for a unit test on CPU (about 15 s per iteration of 2 images).
    """
    from mmengine.dataset import pseudo_collate
    from mmengine.model import revert_sync_batchnorm
    from mmdet.registry import DATASETS
    ckpt, weights = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'r18.pth')
    source = _random_resnet(18, ckpt)
    _export(ckpt, weights)
    cfg = Config.fromfile(SHAPES_DET)
    cfg.merge_from_dict({
        'model.backbone.init_cfg.checkpoint': weights,
        'model.train_cfg.rpn_proposal.max_per_img': 50, 'model.train_cfg.rcnn.sampler.num': 16,
        'model.test_cfg.rpn.max_per_img': 50, 'model.test_cfg.rcnn.max_per_img': 10})
    model = revert_sync_batchnorm(_build(cfg))
    model.init_weights()
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source['layer4.1.conv2.weight'])

    train_cfg = cfg.train_dataloader.dataset.copy()
    train_cfg.update(data_root=shapes_root, num_images=2)
    train_set = DATASETS.build(train_cfg)
    model.train()
    batch = model.data_preprocessor(pseudo_collate([train_set[0]]), True)
    assert batch['inputs'].shape == (1, 3, 128, 128)
    loss, log_vars = model.parse_losses(model(**batch, mode='loss'))
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in log_vars and np.isfinite(float(log_vars[key]))
    loss.backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0  # the whole backbone is fine-tuned

    val_cfg = cfg.val_dataloader.dataset.copy()
    val_cfg.update(data_root=shapes_root, split='train', num_images=1)
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(pseudo_collate([DATASETS.build(val_cfg)[0]]), False)
        pred = model(**batch, mode='predict')[0].pred_instances
    assert len(pred) <= 10 and pred.masks.shape[1:] == (128, 128)
    assert all(0 <= int(c) < 8 for c in pred.labels)


@needs_mmdet
def test_subset_coco_metric_scores_only_the_images_used(shapes_root):
    """Exact predictions (read from the instance/semantic PNGs, not the json) of 4 of 16 images give AP 1."""
    from mmdet.evaluation import CocoMetric

    from mmdetcon.datasets import SHAPES_CLASSES
    from mmdetcon.datasets.shapes_coco import SubsetCocoMetric
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
    for kind in (SubsetCocoMetric, CocoMetric):
        metric = kind(ann_file=ann_file, metric=['bbox', 'segm'])
        metric.dataset_meta = dict(classes=SHAPES_CLASSES)
        metric.process({}, [dict(s, pred_instances=dict(s['pred_instances'])) for s in samples])
        scores[kind.__name__] = metric.compute_metrics(metric.results)
    assert scores['SubsetCocoMetric']['bbox_mAP'] == pytest.approx(1.0)
    assert scores['SubsetCocoMetric']['segm_mAP'] == pytest.approx(1.0)
    assert scores['CocoMetric']['bbox_mAP'] < 0.9  # the other 12 images' objects count as missed
