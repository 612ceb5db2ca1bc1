"""DetCo views: two global views and two independent 3x3 jigsaw patch sets per image (PIRL-style)."""
import copy
from typing import Callable, List, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmcv.transforms.utils import cache_randomness
from mmpretrain.datasets.transforms import RandomResizedCrop

from mmdetcon.registry import TRANSFORMS

Transform = Union[dict, Callable[[dict], dict]]


@TRANSFORMS.register_module()
class DetCoLocalPatches(BaseTransform):
    """One local patch set: crop -> augment -> 3x3 grid -> shuffle -> random patch per cell.

    1. A random crop covering ``crop_scale`` of the image area (aspect ``crop_ratio``), resized to
       ``crop_size`` (upsampled if the image is smaller).
    2. ``transforms`` (flip, colour jitter, grayscale, blur) applied once to the whole crop, so the 9
       patches share one colour draw.
    3. The crop is cut into ``grid_size x grid_size`` cells of ``cell_size``; the cells are put in a fresh
       random slot order, and a ``patch_size`` window at an independent random offset is taken inside each.

    ``results['img']`` becomes the list of ``grid_size**2`` patches (HWC) in slot order;
    ``results['patch_cells']`` holds the grid cell (row-major index) of each slot.
    Images with a side below ``patch_size`` raise ``ValueError``.
    """

    def __init__(self,
                 transforms: Sequence[Transform] = (),
                 crop_size: int = 255,
                 cell_size: int = 85,
                 patch_size: int = 64,
                 grid_size: int = 3,
                 crop_scale: Tuple[float, float] = (0.6, 1.0),
                 crop_ratio: Tuple[float, float] = (3. / 4., 4. / 3.),
                 interpolation: str = 'bilinear',
                 backend: str = 'pillow') -> None:
        if min(crop_size, cell_size, patch_size, grid_size) <= 0:
            raise ValueError('DetCoLocalPatches: sizes must be positive, got '
                             f'crop {crop_size}, cell {cell_size}, patch {patch_size}, grid {grid_size}')
        if crop_size != grid_size * cell_size:
            raise ValueError(f'DetCoLocalPatches: crop_size {crop_size} must equal grid_size x cell_size '
                             f'= {grid_size} x {cell_size} = {grid_size * cell_size}')
        if patch_size > cell_size:
            raise ValueError(f'DetCoLocalPatches: patch_size {patch_size} must not exceed '
                             f'cell_size {cell_size}')
        self.crop_size = crop_size
        self.cell_size = cell_size
        self.patch_size = patch_size
        self.grid_size = grid_size
        self.crop = RandomResizedCrop(scale=crop_size, crop_ratio_range=crop_scale,
                                      aspect_ratio_range=crop_ratio, interpolation=interpolation,
                                      backend=backend)
        self.transforms = Compose(list(transforms))

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @cache_randomness
    def _draw_layout(self) -> Tuple[np.ndarray, np.ndarray]:
        """Slot order of the cells and a (dy, dx) offset per slot."""
        order = np.random.permutation(self.num_patches)
        offsets = np.random.randint(0, self.cell_size - self.patch_size + 1, size=(self.num_patches, 2))
        return order, offsets

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        if min(h, w) < self.patch_size:
            raise ValueError(f'DetCoLocalPatches: image {results.get("img_path", "<in memory>")} is '
                             f'{h}x{w} px; local patches need at least {self.patch_size} px per side')
        results = self.transforms(self.crop(results))
        img = results['img']
        if img.shape[:2] != (self.crop_size, self.crop_size):
            raise ValueError(f'DetCoLocalPatches: transforms must keep the {self.crop_size} px crop '
                             f'size, got {img.shape[:2]}')
        order, offsets = self._draw_layout()
        patches = []
        for cell, (dy, dx) in zip(order, offsets):
            row, col = divmod(int(cell), self.grid_size)
            y0, x0 = row * self.cell_size + dy, col * self.cell_size + dx
            patches.append(np.ascontiguousarray(img[y0:y0 + self.patch_size, x0:x0 + self.patch_size]))
        results['img'] = patches
        results['img_shape'] = (self.patch_size, self.patch_size)
        results['patch_cells'] = order
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, cell_size={self.cell_size}, '
                f'patch_size={self.patch_size}, grid_size={self.grid_size}, crop={self.crop}, '
                f'transforms={self.transforms})')


@TRANSFORMS.register_module()
class DetCoViews(BaseTransform):
    """Emit DetCo's flat view list ``[g_q, g_k, *patches_q, *patches_k]`` in ``results['img']``.

    ``global_transforms`` run ``num_global_views`` times and must yield one image each;
    ``local_transforms`` (ending with :class:`DetCoLocalPatches`) run ``num_local_sets`` times,
    independently, and must yield a list of patches each. Every run starts from a copy of the input.
    After ``PackInputs`` and collation the model receives ``2 + 2 * 9`` views.
    """

    def __init__(self, global_transforms: Sequence[Transform], local_transforms: Sequence[Transform],
                 num_global_views: int = 2, num_local_sets: int = 2) -> None:
        self.global_pipeline = Compose(list(global_transforms))
        self.local_pipeline = Compose(list(local_transforms))
        self.num_global_views = num_global_views
        self.num_local_sets = num_local_sets

    def transform(self, results: dict) -> dict:
        views: List[np.ndarray] = []
        for _ in range(self.num_global_views):
            img = self.global_pipeline(copy.deepcopy(results))['img']
            if not isinstance(img, np.ndarray):
                raise ValueError(f'DetCoViews: global_transforms must yield one image, got {type(img)}')
            views.append(img)
        cells = []
        for _ in range(self.num_local_sets):
            out = self.local_pipeline(copy.deepcopy(results))
            if not isinstance(out['img'], list):
                raise ValueError('DetCoViews: local_transforms must end with DetCoLocalPatches '
                                 f'(a list of patches), got {type(out["img"])}')
            views.extend(out['img'])
            cells.append(out.get('patch_cells'))
        results['img'] = views
        results['patch_cells'] = cells
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(global={self.global_pipeline}, local={self.local_pipeline}, '
                f'num_global_views={self.num_global_views}, num_local_sets={self.num_local_sets})')
