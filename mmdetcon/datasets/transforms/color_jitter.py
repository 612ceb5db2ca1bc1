"""BYOL/DetCon colour jitter: additive brightness, ops in random order, clip after each op."""
from typing import Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdetcon.registry import TRANSFORMS


@TRANSFORMS.register_module()
class DetConColorJitter(BaseTransform):
    """Colour jitter with the semantics of DetCon's official pipeline (dm_pix ops on [0, 1]).

    Applies, in a random order, each of (x is the image scaled to [0, 1], clipped to [0, 1]
    after every op):

    - brightness: x + d, d ~ U(-brightness, brightness)  (additive, unlike torchvision/mmcv's
      multiplicative factor);
    - contrast: (x - m) * f + m, f ~ U(1 - contrast, 1 + contrast), m the per-channel mean;
    - saturation: HSV S * f clipped to [0, 1], f ~ U(1 - saturation, 1 + saturation);
    - hue: HSV H + d modulo 1 turn, d ~ U(-hue, hue).

    Always applies all four ops; wrap it in ``RandomApply(prob=0.8)`` for DetCon's jitter
    probability. A uint8 image is returned as uint8 (rounded), a float image in [0, 255] as float.

    Args:
        brightness, contrast, saturation, hue: jitter strengths (DetCon: 0.4, 0.4, 0.2, 0.1).
        channel_order: order of ``results['img']`` channels ('bgr' after mmcv loading).
    """

    def __init__(self,
                 brightness: float = 0.4,
                 contrast: float = 0.4,
                 saturation: float = 0.2,
                 hue: float = 0.1,
                 channel_order: str = 'bgr') -> None:
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError('jitter strengths must be >= 0 and hue <= 0.5')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.channel_order = channel_order

    @cache_randomness
    def _rand_params(self) -> Tuple[np.ndarray, float, float, float, float]:
        order = np.random.permutation(4)
        b = np.random.uniform(-self.brightness, self.brightness)
        c = np.random.uniform(1 - self.contrast, 1 + self.contrast)
        s = np.random.uniform(1 - self.saturation, 1 + self.saturation)
        h = np.random.uniform(-self.hue, self.hue)
        return order, b, c, s, h

    def _hsv(self, x: np.ndarray, sat_factor: float, hue_delta: float) -> np.ndarray:
        if sat_factor == 1.0 and hue_delta == 0.0:
            return x
        to_hsv, to_col = ((cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR) if self.channel_order == 'bgr'
                          else (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB))
        hsv = cv2.cvtColor(x, to_hsv)  # float32: H in degrees [0, 360), S and V in [0, 1]
        if sat_factor != 1.0:
            hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(sat_factor), 0, 1)
        if hue_delta != 0.0:
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(360.0 * hue_delta), 360.0)
        return cv2.cvtColor(hsv, to_col)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'DetConColorJitter needs an (H, W, 3) image, got {img.shape}')
        x = img.astype(np.float32) * np.float32(1 / 255)
        order, b, c, s, h = self._rand_params()
        for op in order:
            if op == 0:
                x += np.float32(b)
            elif op == 1:
                mean = np.array(cv2.mean(x)[:3], np.float32)  # per channel
                x = (x - mean) * np.float32(c) + mean
            elif op == 2:
                x = self._hsv(x, s, 0.0)
            else:
                x = self._hsv(x, 1.0, h)
            np.clip(x, 0.0, 1.0, out=x)
        x = x * 255.0
        results['img'] = (np.round(x).astype(np.uint8) if img.dtype == np.uint8 else
                          x.astype(img.dtype))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, hue={self.hue}, '
                f'channel_order={self.channel_order!r})')
