"""Spatial-grid segment ids: the simplest DetCon mask source (no image content used)."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmdetcon.registry import TRANSFORMS


def grid_ids(height: int, width: int, grid_size: int) -> np.ndarray:
    """(H, W) int32 ids of an n x n grid over the image: id = row_cell * n + col_cell.

    Pixel (y, x) is in row cell floor(y * n / H) and column cell floor(x * n / W), so cells differ
    in size by at most one pixel when n does not divide the image size.
    """
    rows = (np.arange(height) * grid_size) // height
    cols = (np.arange(width) * grid_size) // width
    return (rows[:, None] * grid_size + cols[None, :]).astype(np.int32)


@TRANSFORMS.register_module()
class GridMask(BaseTransform):
    """Write an n x n grid id map of the full image into ``results['gt_seg_map']``.

    Args:
        grid_size: n, the number of cells per side (n * n ids).
    """

    def __init__(self, grid_size: int = 4) -> None:
        if grid_size < 1:
            raise ValueError(f'grid_size must be >= 1, got {grid_size}')
        self.grid_size = grid_size

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        results['gt_seg_map'] = grid_ids(h, w, self.grid_size)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(grid_size={self.grid_size})'
