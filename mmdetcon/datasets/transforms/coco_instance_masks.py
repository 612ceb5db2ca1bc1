"""Ground-truth instance ids from COCO annotations (DetCon's "human annotation" mask source)."""
from typing import List, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from pycocotools import mask as mask_utils

from mmdetcon.registry import TRANSFORMS


def ann_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 0/1 mask of one COCO ``segmentation`` (polygons, RLE or uncompressed RLE).

    Same decoding as ``pycocotools.coco.COCO.annToMask`` without needing a COCO object.
    """
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get('counts'), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def instance_id_map(anns: Sequence[dict], height: int, width: int,
                    with_crowd: bool = True) -> np.ndarray:
    """(H, W) int32 id map: 0 = background, instance k of ``anns`` (in order) gets id k + 1.

    Overlaps: larger instances are painted first, so a smaller instance lying on a larger one
    keeps its pixels (area = decoded pixel count; ties keep annotation order). Crowd regions
    (``iscrowd=1``) are instances like any other unless ``with_crowd=False`` (then background).
    An instance fully covered by smaller ones has no pixel left.
    """
    ids = np.zeros((height, width), np.int32)
    masks: List[np.ndarray] = []
    for ann in anns:
        seg = ann.get('segmentation')
        if not seg or (ann.get('iscrowd', 0) and not with_crowd):
            masks.append(None)
            continue
        masks.append(ann_to_mask(seg, height, width).astype(bool))
    areas = [-1 if m is None else int(m.sum()) for m in masks]
    for k in sorted(range(len(masks)), key=lambda i: -areas[i]):  # stable: ties in order
        if masks[k] is not None:
            ids[masks[k]] = k + 1
    return ids


@TRANSFORMS.register_module()
class LoadCocoInstanceIds(BaseTransform):
    """Write the COCO ground-truth instance id map into ``results['gt_seg_map']`` (H, W) int32.

    Reads ``results['coco_anns']`` (the image's annotation dicts) and the image size from
    ``results['img']`` (or ``height``/``width``), as provided by ``CocoMaskDataset``. Background
    is id 0, instances 1..n in annotation order; see :func:`instance_id_map` for overlaps.

    Args:
        with_crowd: keep ``iscrowd`` regions as instances (default) or leave them background.
    """

    def __init__(self, with_crowd: bool = True) -> None:
        self.with_crowd = with_crowd

    def transform(self, results: dict) -> dict:
        if 'coco_anns' not in results:
            raise KeyError('LoadCocoInstanceIds needs `coco_anns` (use CocoMaskDataset); image '
                           f'{results.get("img_path")}')
        if 'img' in results:
            h, w = results['img'].shape[:2]
        else:
            h, w = results['height'], results['width']
        if 'height' in results and (results['height'], results['width']) != (h, w):
            raise ValueError(f'image {results.get("img_path")} is {h}x{w} but its COCO entry '
                             f'(img_id {results.get("img_id")}) says '
                             f'{results["height"]}x{results["width"]}')
        results['gt_seg_map'] = instance_id_map(results['coco_anns'], h, w, self.with_crowd)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(with_crowd={self.with_crowd})'
