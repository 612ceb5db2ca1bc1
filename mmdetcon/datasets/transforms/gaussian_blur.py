"""BYOL/DetCon Gaussian blur: sigma ~ U(0.1, 2), kernel of image_size / 10 taps."""
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdetcon.registry import TRANSFORMS

_BORDERS = {'zeros': cv2.BORDER_CONSTANT, 'reflect': cv2.BORDER_REFLECT_101}


def gaussian_taps(sigma: float, radius: int) -> np.ndarray:
    """Normalised 1-D Gaussian kernel exp(-x^2 / (2 sigma^2)), x = -radius..radius."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-x ** 2 / (2.0 * sigma ** 2))
    return (k / k.sum()).astype(np.float32)


@TRANSFORMS.register_module()
class DetConGaussianBlur(BaseTransform):
    """Separable Gaussian blur with probability ``prob`` (DetCon: 1.0 on view 1, 0.1 on view 2).

    The kernel has 2 * int(H / blur_divider / 2) + 1 taps for an image of height H (23 taps at
    224 px, 9 at 96 px), as in the official pipeline, unless ``radius`` is given. The official code
    convolves with zero ('SAME') padding, which slightly darkens a border of ``radius`` pixels;
    ``padding='zeros'`` reproduces it and ``'reflect'`` avoids it.

    Args:
        sigma_range: sigma ~ U(sigma_range), in pixels.
        prob: probability of blurring.
        blur_divider: kernel size = image height / blur_divider.
        radius: fixed kernel radius (overrides ``blur_divider``).
        padding: 'zeros' (official) or 'reflect'.
    """

    def __init__(self,
                 sigma_range: Tuple[float, float] = (0.1, 2.0),
                 prob: float = 1.0,
                 blur_divider: float = 10.0,
                 radius: Optional[int] = None,
                 padding: str = 'zeros') -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if padding not in _BORDERS:
            raise ValueError(f'padding must be one of {list(_BORDERS)}, got {padding!r}')
        self.sigma_range = tuple(sigma_range)
        self.prob = prob
        self.blur_divider = blur_divider
        self.radius = radius
        self.padding = padding

    @cache_randomness
    def _rand_params(self) -> Tuple[bool, float]:
        apply = np.random.rand() < self.prob
        return apply, float(np.random.uniform(*self.sigma_range))

    def transform(self, results: dict) -> dict:
        apply, sigma = self._rand_params()
        if not apply:
            return results
        img = results['img']
        radius = self.radius
        if radius is None:
            radius = int(img.shape[0] / self.blur_divider / 2)
        if radius < 1:
            return results
        k = gaussian_taps(sigma, radius)
        out = cv2.sepFilter2D(img.astype(np.float32), -1, k, k,
                              borderType=_BORDERS[self.padding])
        if out.ndim == 2 and img.ndim == 3:
            out = out[..., None]
        results['img'] = (np.clip(np.round(out), 0, 255).astype(np.uint8)
                          if img.dtype == np.uint8 else out.astype(img.dtype))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sigma_range={self.sigma_range}, prob={self.prob}, '
                f'blur_divider={self.blur_divider}, radius={self.radius}, '
                f'padding={self.padding!r})')
