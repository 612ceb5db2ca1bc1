"""Felzenszwalb-Huttenlocher (FH) segment ids, DetCon's default mask source."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmdetcon.registry import TRANSFORMS
from mmdetcon.utils.masks_io import fh_segment


def to_uint8_rgb(img: np.ndarray, channel_order: str = 'bgr') -> np.ndarray:
    """Return ``img`` as an (H, W, 3) uint8 RGB array.

    Accepts what mmcv loading produces: uint8/uint16/float (float in [0, 255]), grey (H, W) or
    (H, W, 1), BGR(A)/RGB(A). Grey is replicated to 3 channels, alpha is dropped, uint16 is reduced
    by ``>> 8`` (OpenCV's rule, as for the offline masks).
    """
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected an (H, W[, 1|3|4]) image, got shape {img.shape}')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., :3]
    if channel_order == 'bgr':
        img = img[..., ::-1]
    elif channel_order != 'rgb':
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(np.round(img), 0, 255).astype(np.uint8)
    raise ValueError(f'unsupported image dtype {img.dtype}')


@TRANSFORMS.register_module()
class FelzenszwalbMask(BaseTransform):
    """Compute the image-level FH id map online: ``results['gt_seg_map']`` (H, W) int32.

    Place it right after ``LoadImageFromFile`` so that FH sees the full-resolution decoded image
    (running FH on a crop changes the segments). The segmentation is
    ``mmdetcon.utils.masks_io.fh_segment``, the function ``tools/masks/generate_masks.py`` uses, so
    online and offline masks agree. Defaults are DetCon's (scale 1000, sigma 0.8, min_size 1000 at
    ImageNet resolution); for small images scale ``scale`` and ``min_size`` with the pixel count.
    Ids above 255 are kept (never wrapped).

    Args:
        scale, sigma, min_size: FH parameters (skimage ``felzenszwalb``).
        backend: 'skimage' (the definition) or 'opencv' (faster, not equivalent; needs contrib).
        channel_order: channel order of ``results['img']`` (mmcv loads 'bgr').
    """

    def __init__(self,
                 scale: float = 1000,
                 sigma: float = 0.8,
                 min_size: int = 1000,
                 backend: str = 'skimage',
                 channel_order: str = 'bgr') -> None:
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size
        self.backend = backend
        self.channel_order = channel_order

    def transform(self, results: dict) -> dict:
        rgb = to_uint8_rgb(results['img'], self.channel_order)
        results['gt_seg_map'] = fh_segment(rgb, self.scale, self.sigma, self.min_size,
                                           backend=self.backend)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, sigma={self.sigma}, '
                f'min_size={self.min_size}, backend={self.backend!r}, '
                f'channel_order={self.channel_order!r})')
