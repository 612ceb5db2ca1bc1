"""Shapes images labelled with the set of classes they contain, for multi-label linear probes.

Scenes hold 2-6 objects, so a single image label would be arbitrary; as in the VOC07 classification
benchmark of self-supervised learning, each image is labelled with every class present.
"""
import json
import os.path as osp
from typing import List

from mmdetcon.registry import DATASETS

from .shapes import ShapesDataset


@DATASETS.register_module()
class ShapesMultiLabelDataset(ShapesDataset):
    """:class:`ShapesDataset` whose data infos carry ``gt_label``: the sorted 0-based ids of the classes
    with at least one instance, read from ``{data_root}/annotations/instances_{split}.json``."""

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        ann_file = osp.join(self.data_root, 'annotations', f'instances_{self.split}.json')
        if not osp.isfile(ann_file):
            raise FileNotFoundError(f'annotation file not found: {ann_file}')
        with open(ann_file) as f:
            coco = json.load(f)
        image_ids = {img['file_name']: img['id'] for img in coco['images']}
        present = {img_id: set() for img_id in image_ids.values()}
        for ann in coco['annotations']:
            present[ann['image_id']].add(int(ann['category_id']) - 1)
        for info in data_list:
            name = osp.basename(info['img_path'])
            if name not in image_ids:
                raise ValueError(f'{info["img_path"]} has no entry in {ann_file}')
            info['gt_label'] = sorted(present[image_ids[name]])
        return data_list
