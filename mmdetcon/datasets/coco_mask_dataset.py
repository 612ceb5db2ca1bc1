"""COCO images for DetCon pretraining, with ground-truth instance annotations or FH id maps."""
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.fileio import get_local_path
from mmpretrain.datasets import BaseDataset
from pycocotools.coco import COCO

from mmdetcon.registry import DATASETS
from .image_mask_dataset import mask_root_check
from .skip_unreadable import SkipUnreadableMixin, drop_failed

_ANN_KEYS = ('id', 'category_id', 'iscrowd', 'segmentation', 'area', 'bbox')


@DATASETS.register_module()
class CocoMaskDataset(SkipUnreadableMixin, BaseDataset):
    """Every image of a COCO instances json (labels are not used), sorted by image id. While training,
    an unreadable image or id map is skipped (:class:`SkipUnreadableMixin`).

    Each data info has ``img_path``, ``img_id``, ``height``, ``width`` and:

    - with ``with_anns=True``, ``coco_anns`` (the image's annotations, in json order) for
      ``LoadCocoInstanceIds`` (ground-truth instance masks);
    - with ``mask_root``, ``seg_map_path`` (``mask_root`` mirroring the image folder, ``.png``)
      for ``LoadIdMap`` (e.g. FH masks from ``tools/masks/generate_masks.py``).

    Args:
        data_root: root joined to relative ``ann_file``, ``data_prefix`` and ``mask_root``.
        ann_file: COCO instances json (e.g. ``annotations/instances_train2017.json``).
        data_prefix: image folder (str or ``dict(img_path=...)``).
        mask_root: id-map folder, or None.
        with_anns: keep the annotations (needed for ground-truth masks only; costs memory).
        skip_empty: drop images without any non-crowd annotation (default: keep all images).
        allow_missing_masks: warn instead of raising when ``mask_root`` does not exist.
        exclude_failed: leave out the images that ``generate_masks.py`` listed as failed in
            ``mask_root/summary*.json``.
    """

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = 'annotations/instances_train2017.json',
                 data_prefix='train2017/',
                 mask_root: Optional[str] = None,
                 with_anns: bool = True,
                 skip_empty: bool = False,
                 allow_missing_masks: bool = False,
                 exclude_failed: bool = True,
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        self.exclude_failed = exclude_failed
        if mask_root is not None and data_root and not osp.isabs(mask_root):
            mask_root = osp.join(data_root, mask_root)
        self.mask_root = mask_root
        self.with_anns = with_anns
        self.skip_empty = skip_empty
        self.allow_missing_masks = allow_missing_masks
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         pipeline=pipeline, **kwargs)

    def load_data_list(self) -> List[dict]:
        mask_root_check(self.mask_root, self.img_prefix, self.allow_missing_masks)
        if not self.ann_file:
            raise ValueError('CocoMaskDataset needs ann_file (a COCO instances json)')
        with get_local_path(self.ann_file) as local:
            if not osp.isfile(local):
                raise FileNotFoundError(f'COCO annotation file not found: {self.ann_file}')
            coco = COCO(local)
        dropped = drop_failed([img['file_name'] for img in coco.imgs.values()], self.mask_root,
                              self.exclude_failed)
        data_list = []
        for img_id in sorted(coco.imgs):
            img = coco.imgs[img_id]
            if img['file_name'] in dropped:
                continue
            anns = coco.imgToAnns.get(img_id, [])
            if self.skip_empty and not any(not a.get('iscrowd', 0) for a in anns):
                continue
            rel = img['file_name']
            info = dict(img_path=osp.join(self.img_prefix, rel), img_id=img_id,
                        height=img['height'], width=img['width'])
            if self.with_anns:
                info['coco_anns'] = [{k: a[k] for k in _ANN_KEYS if k in a} for a in anns]
            if self.mask_root is not None:
                info['seg_map_path'] = osp.join(self.mask_root, osp.splitext(rel)[0] + '.png')
            data_list.append(info)
        if not data_list:
            raise ValueError(f'no image in {self.ann_file}')
        return data_list
