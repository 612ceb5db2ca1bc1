"""mmpretrain's ``ColorJitter`` with a hue shift that works under numpy 2.

mmcv 2.1's ``adjust_hue`` adds ``np.uint8(hue_factor * 255)``, which raises ``OverflowError`` on numpy 2
for a negative factor (half of all draws with ``hue > 0``). This transform keeps mmpretrain's random
parameters and op order and replaces only the hue op by the same uint8 wrap-around shift done in int.
"""
from typing import Dict

import cv2
import mmcv
import numpy as np
from mmpretrain.datasets.transforms import ColorJitter

from mmdetcon.registry import TRANSFORMS


def shift_hue(img: np.ndarray, hue_factor: float) -> np.ndarray:
    """Rotate the hue of a BGR image by ``hue_factor`` turns (in [-0.5, 0.5]) on the 256-step HSV wheel."""
    dtype = img.dtype
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
    step = int(hue_factor * 255)  # truncation toward zero, as np.uint8(x) did before numpy 2
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + step) % 256).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL).astype(dtype)


@TRANSFORMS.register_module()
class HueSafeColorJitter(ColorJitter):
    """Drop-in for mmpretrain ``ColorJitter`` (same arguments; cv2 backend for the hue op)."""

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        order, brightness, contrast, saturation, hue = self._rand_params()
        for index in order:
            if index == 0 and brightness is not None:
                img = mmcv.adjust_brightness(img, brightness, backend=self.backend)
            elif index == 1 and contrast is not None:
                img = mmcv.adjust_contrast(img, contrast, backend=self.backend)
            elif index == 2 and saturation is not None:
                img = mmcv.adjust_color(img, alpha=saturation, backend=self.backend)
            elif index == 3 and hue is not None:
                img = shift_hue(img, hue)
        results['img'] = img
        return results
