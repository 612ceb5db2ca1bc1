"""Multiple augmented views of an image, each with its own crop of the image-level id map, and the
packing that hands the views' id maps to the loader as one tensor per sample."""
import copy
from typing import List, Union

import numpy as np
import torch
from mmpretrain.datasets.transforms import MultiView, PackInputs

from mmdetcon.registry import TRANSFORMS
from mmdetcon.models.utils.mask_pooling import NUM_MASK_IDS


@TRANSFORMS.register_module()
class MultiViewWithMask(MultiView):
    """Like mmpretrain's ``MultiView``, but keeps each view's ``gt_seg_map`` too.

    Each view pipeline runs on a copy of ``results`` (which must hold the image-level id map in
    ``gt_seg_map``) and must transform the map with the image (``DetConRandomResizedCrop``,
    ``RandomFlip``; photometric ops leave it alone). Afterwards ``results['img']`` is the list of
    V view images and ``results['mask']`` the (V, H, W) stack of their id maps, which
    :class:`PackDetConInputs` hands to the loader as one tensor (``PackInputs`` would store it as
    ``DataSample.mask``); ``img_shape`` becomes the views' (H, W). Ids are copied, never
    relabelled. The image-level ``gt_seg_map`` is removed.

    This is where DetCon's id range is enforced: every id of the image-level map must lie in
    [0, ``num_mask_ids``), else a ``ValueError`` names the image, its id map and the limit. The
    model (``DetConB/S(num_mask_ids=...)``, the same value) then needs no check of its own.

    Args:
        transforms: one transform list per view group.
        num_views: number of views per group, e.g. ``[1, 1]`` for DetCon's asymmetric views.
        mask_dtype: dtype of the stacked ids ('int32' keeps the dataloader light; cast to int64
            in the model).
        num_mask_ids: M, the number of ids an image may use (0..M-1). The default, 65536, accepts
            every map the mask tools write (uint8 or uint16 PNGs).
    """

    def __init__(self, transforms: List[list], num_views: Union[int, List[int]],
                 mask_dtype: str = 'int32', num_mask_ids: int = NUM_MASK_IDS) -> None:
        super().__init__(transforms, num_views)
        self.mask_dtype = np.dtype(mask_dtype)
        if not np.issubdtype(self.mask_dtype, np.signedinteger):
            raise ValueError(f'mask_dtype must be a signed integer type, got {mask_dtype}')
        if not isinstance(num_mask_ids, int) or num_mask_ids < 1:
            raise ValueError(f'num_mask_ids must be a positive int, got {num_mask_ids!r}')
        if num_mask_ids - 1 > np.iinfo(self.mask_dtype).max:
            raise ValueError(f'num_mask_ids={num_mask_ids}: ids up to {num_mask_ids - 1} do not fit '
                             f'mask_dtype {self.mask_dtype}')
        self.num_mask_ids = num_mask_ids

    def _check_ids(self, ids: np.ndarray, results: dict) -> None:
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f'the id map of {results.get("img_path")} has dtype {ids.dtype}; '
                             'expected integer segment ids')
        low, high = int(ids.min(initial=0)), int(ids.max(initial=0))
        if low >= 0 and high < self.num_mask_ids:
            return
        source = results.get('seg_map_path')
        where = f'image {results.get("img_path")}' + (f' (id map {source})' if source else '')
        bad = low if low < 0 else high
        raise ValueError(f'{where}: segment id {bad} is outside [0, num_mask_ids={self.num_mask_ids}); '
                         'DetCon needs ids in 0..num_mask_ids-1. Raise num_mask_ids in both '
                         'MultiViewWithMask and the model (DetConB/DetConS num_mask_ids), or '
                         'remake the map')

    def transform(self, results: dict) -> dict:
        if results.get('gt_seg_map') is None:
            raise KeyError('MultiViewWithMask needs `gt_seg_map` (put a mask source such as '
                           'FelzenszwalbMask or LoadIdMap before it); image '
                           f'{results.get("img_path")}')
        self._check_ids(np.asarray(results['gt_seg_map']), results)
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
        results['img'] = imgs
        results['img_shape'] = stacked.shape[1:]
        results['mask'] = stacked.astype(self.mask_dtype)
        results.pop('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', mask_dtype={self.mask_dtype}, '
                f'num_mask_ids={self.num_mask_ids})')


@TRANSFORMS.register_module()
class PackDetConInputs(PackInputs):
    """``PackInputs`` that keeps the views' id maps out of the data sample.

    ``results['mask']`` (V, H, W) from :class:`MultiViewWithMask` becomes ``packed['masks']``, a
    tensor of its own, so that ``default_collate`` stacks the batch's maps into ONE [B, V, H, W]
    tensor (pinned by the loader's ``pin_memory``, moved at once by ``DetConDataPreprocessor``)
    instead of one ``DataSample.mask`` per image moved one by one. Arguments as ``PackInputs``.
    """

    def transform(self, results: dict) -> dict:
        if results.get('mask') is None:
            raise KeyError('PackDetConInputs needs the views\' id maps in `mask` (put '
                           f'MultiViewWithMask before it); image {results.get("img_path")}')
        masks = np.ascontiguousarray(results.pop('mask'))
        packed = super().transform(results)
        packed['masks'] = torch.from_numpy(masks)
        return packed
