"""Multiple augmented views of an image, each with its own crop of the image-level id map."""
import copy
from typing import List, Union

import numpy as np
from mmpretrain.datasets.transforms import MultiView

from mmdetcon.registry import TRANSFORMS


@TRANSFORMS.register_module()
class MultiViewWithMask(MultiView):
    """Like mmpretrain's ``MultiView``, but keeps each view's ``gt_seg_map`` too.

    Each view pipeline runs on a copy of ``results`` (which must hold the image-level id map in
    ``gt_seg_map``) and must transform the map with the image (``DetConRandomResizedCrop``,
    ``RandomFlip``; photometric ops leave it alone). Afterwards ``results['img']`` is the list of
    V view images and ``results['mask']`` the (V, H, W) stack of their id maps, which
    ``PackInputs`` stores as ``DataSample.mask``; ``img_shape`` becomes the views' (H, W). Ids are
    copied, never relabelled. The image-level ``gt_seg_map`` is removed.

    Args:
        transforms: one transform list per view group.
        num_views: number of views per group, e.g. ``[1, 1]`` for DetCon's asymmetric views.
        mask_dtype: dtype of the stacked ids ('int32' keeps the dataloader light; cast to int64
            in the model).
    """

    def __init__(self, transforms: List[list], num_views: Union[int, List[int]],
                 mask_dtype: str = 'int32') -> None:
        super().__init__(transforms, num_views)
        self.mask_dtype = np.dtype(mask_dtype)
        if not np.issubdtype(self.mask_dtype, np.signedinteger):
            raise ValueError(f'mask_dtype must be a signed integer type, got {mask_dtype}')

    def transform(self, results: dict) -> dict:
        if results.get('gt_seg_map') is None:
            raise KeyError('MultiViewWithMask needs `gt_seg_map` (put a mask source such as '
                           'FelzenszwalbMask or LoadIdMap before it); image '
                           f'{results.get("img_path")}')
        imgs, masks = [], []
        for i, pipeline in enumerate(self.transforms):
            out = pipeline(copy.deepcopy(results))
            if out is None or out.get('gt_seg_map') is None:
                raise ValueError(f'view {i} pipeline dropped the sample or its gt_seg_map '
                                 f'({results.get("img_path")})')
            img, seg = out['img'], out['gt_seg_map']
            if seg.shape[:2] != img.shape[:2]:
                raise ValueError(f'view {i}: id map {seg.shape[:2]} and image {img.shape[:2]} '
                                 'differ in size; the view pipeline must transform both')
            imgs.append(img)
            masks.append(seg)
        if len({m.shape for m in masks}) != 1:
            raise ValueError('MultiViewWithMask stacks the id maps of all views, so the views '
                             f'must share one size; got {[m.shape for m in masks]}')
        stacked = np.stack(masks)
        if stacked.max(initial=0) > np.iinfo(self.mask_dtype).max:
            raise ValueError(f'id {stacked.max()} does not fit mask_dtype {self.mask_dtype}')
        results['img'] = imgs
        results['img_shape'] = stacked.shape[1:]
        results['mask'] = stacked.astype(self.mask_dtype)
        results.pop('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', mask_dtype={self.mask_dtype})'
