"""Detection fine-tune of an exported backbone: the shapes Mask R-CNN, box and mask AP on the test split.

Needs mmdet, hence full mmcv with compiled ops. The backbone keeps ResNet's standard strides here (the
anchors and FPN levels assume them); strides do not change the weights, so the same file loads.
"""
import json
import os.path as osp
from typing import Callable, List, Tuple

from mmengine.config import Config

from ..utils.logs import logged_scalars
from .pretrain import drop_checkpoints, train_in_stage
from .profiles import ROOT, Profile

DETECTION_CONFIG = 'configs/benchmarks/mmdet/mask-rcnn_r18_fpn_1xb4-2e_shapes.py'


def detection_config(profile: Profile, backbone: str, data_root: str, epochs: int, seed: int) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, DETECTION_CONFIG))
    w = profile.base_channels
    cfg.model.backbone.update(base_channels=w, stem_channels=w,
                              init_cfg=dict(type='Pretrained', checkpoint=osp.abspath(backbone)))
    cfg.model.neck.in_channels = [w, 2 * w, 4 * w, 8 * w]
    for loader, split, num in ((cfg.train_dataloader, 'train', profile.train_images),
                               (cfg.val_dataloader, 'test', profile.test_images)):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data_root, split=split, num_images=num, image_size=profile.image_size,
                              **profile.scene())
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = osp.join(data_root, 'annotations', 'instances_test.json')
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs, max_keep_ckpts=1)
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    return cfg


def last_coco_metrics(work: str) -> dict:
    """Box and mask AP (%) of the last evaluation logged under ``work``."""
    found = {}
    for row in logged_scalars(work):
        if 'coco/bbox_mAP' in row:
            found = row
    if not found:
        raise RuntimeError(f'no COCO metrics logged under {work}')
    return dict(bbox_mAP=round(100 * found['coco/bbox_mAP'], 2), segm_mAP=round(100 * found['coco/segm_mAP'], 2))


def fine_tune(stage_dir: str, profile: Profile, backbone: str, data_root: str, epochs: int, seed: int,
              progress: Callable[[int], None] = lambda n: None) -> Tuple[dict, List[str]]:
    """Stage body: train and evaluate; returns (record with the metrics, files)."""
    wall, cpu, work = train_in_stage(stage_dir, detection_config(profile, backbone, data_root, epochs, seed),
                                     progress)
    metrics = last_coco_metrics(work)
    drop_checkpoints(work)
    with open(osp.join(stage_dir, 'metrics.json'), 'w') as f:
        json.dump(metrics, f)
    return dict(metrics, det_epochs=epochs, det_wall_s=round(wall, 1), det_cpu_s=round(cpu, 1)), \
        ['config.py', 'metrics.json']
