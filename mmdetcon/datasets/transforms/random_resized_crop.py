"""DetCon's random resized crop: one window for the image and its segment-id map."""
import math
from typing import Tuple

import mmcv
import numpy as np
from mmcv.transforms.utils import cache_randomness
from mmpretrain.datasets.transforms import RandomResizedCrop

from mmdetcon.registry import TRANSFORMS


def resize_nearest(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest resize with half-pixel centres: output (i, j) takes input
    (floor((i + 0.5) * H / height), floor((j + 0.5) * W / width)). Any dtype; values unchanged."""
    h, w = ids.shape[:2]
    rows = np.minimum(((2 * np.arange(height) + 1) * h) // (2 * height), h - 1)
    cols = np.minimum(((2 * np.arange(width) + 1) * w) // (2 * width), w - 1)
    return ids.take(rows, axis=0).take(cols, axis=1)


@TRANSFORMS.register_module()
class DetConRandomResizedCrop(RandomResizedCrop):
    """Random resized crop of ``img`` and ``gt_seg_map`` with the same window (DetCon / BYOL).

    Window: area fraction A ~ U(crop_ratio_range), aspect ratio r log-uniform in
    ``aspect_ratio_range``; w = round(sqrt(A*H*W*r)), h = round(sqrt(A*H*W/r)), each clipped to
    [1, image size]; offset uniform. One draw: unlike mmpretrain's ``RandomResizedCrop`` there are no
    retries and no centre-crop fallback. The image is resized with ``interpolation`` (bicubic by
    default; cv2's cubic kernel, a = -0.75) and kept in [0, 255]; the id map with nearest
    (half-pixel centres), so ids are never mixed or relabelled. Images smaller than the output
    are upsampled.

    Args:
        scale: output size, int or (h, w) (mmpretrain's name; torchvision calls it ``size``).
        crop_ratio_range: range of A (torchvision's ``scale``).
        aspect_ratio_range: range of r (torchvision's ``ratio``).
        interpolation: image interpolation ('bicubic', 'bilinear', ...).
        backend: 'cv2' or 'pillow' for the image resize.
    """

    def __init__(self,
                 scale,
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 interpolation: str = 'bicubic',
                 backend: str = 'cv2') -> None:
        super().__init__(scale, crop_ratio_range, aspect_ratio_range, max_attempts=1,
                         interpolation=interpolation, backend=backend)

    @cache_randomness
    def rand_crop_params(self, img: np.ndarray) -> Tuple[int, int, int, int]:
        """(offset_h, offset_w, crop_h, crop_w) of one random window."""
        h, w = img.shape[:2]
        area = np.random.uniform(*self.crop_ratio_range) * h * w
        log_lo, log_hi = (math.log(r) for r in self.aspect_ratio_range)
        ratio = math.exp(np.random.uniform(log_lo, log_hi))
        crop_w = min(max(int(round(math.sqrt(area * ratio))), 1), w)
        crop_h = min(max(int(round(math.sqrt(area / ratio))), 1), h)
        offset_h = np.random.randint(0, h - crop_h + 1)
        offset_w = np.random.randint(0, w - crop_w + 1)
        return offset_h, offset_w, crop_h, crop_w

    def transform(self, results: dict) -> dict:
        img = results['img']
        y, x, ch, cw = self.rand_crop_params(img)
        out_h, out_w = self.scale[0], self.scale[1]
        crop = img[y:y + ch, x:x + cw]
        resized = mmcv.imresize(crop, (out_w, out_h), interpolation=self.interpolation,
                                backend=self.backend)
        if resized.ndim == 2 and crop.ndim == 3:  # cv2 drops a trailing singleton channel
            resized = resized[..., None]
        if np.issubdtype(resized.dtype, np.floating):
            resized = np.clip(resized, 0, 255)  # cubic overshoot; uint8 saturates in cv2
        results['img'] = resized
        results['img_shape'] = resized.shape[:2]
        if results.get('gt_seg_map') is not None:
            seg = results['gt_seg_map']
            if seg.shape[:2] != img.shape[:2]:
                raise ValueError(f'gt_seg_map {seg.shape[:2]} and img {img.shape[:2]} differ in '
                                 f'size for {results.get("img_path")}')
            results['gt_seg_map'] = resize_nearest(seg[y:y + ch, x:x + cw], out_h, out_w)
        results['crop_bbox'] = np.array([x, y, x + cw, y + ch])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'crop_ratio_range={self.crop_ratio_range}, '
                f'aspect_ratio_range={self.aspect_ratio_range}, '
                f'interpolation={self.interpolation}, backend={self.backend})')
