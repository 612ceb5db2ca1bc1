"""One fixed colour per segment id, and id maps drawn over images."""
import colorsys
from typing import Sequence, Tuple

import numpy as np

GREY = (0.72, 0.72, 0.72)
_COLOUR_SALT = 0x5EED


def id_colour(seg_id: int) -> Tuple[float, float, float]:
    """A fixed, fairly saturated RGB colour in [0, 1] for a segment id.

    Hues step by the golden ratio, so close ids (FH numbers neighbouring segments close together)
    get distant hues; saturation and value are pseudo-random per id.
    """
    rng = np.random.default_rng([_COLOUR_SALT, int(seg_id)])
    hue = (0.12 + int(seg_id) * 0.6180339887498949) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.55 + 0.4 * rng.random(), 0.75 + 0.25 * rng.random())


def colourise(ids: np.ndarray) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) float32 colours (``id_colour`` of each pixel's id)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    lut = np.array([id_colour(i) for i in uniq], dtype=np.float32).reshape(-1, 3)
    return lut[inverse.reshape(ids.shape)]


def boundaries(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another id."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def to_rgb(img: np.ndarray) -> np.ndarray:
    """mmcv image (BGR, uint8 or float in [0, 255], maybe single-channel) -> (H, W, 3) uint8 RGB."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., 2::-1]
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _upscale(arr: np.ndarray, factor: int) -> np.ndarray:
    return arr.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else arr


def display_factor(shape: Sequence[int], target: int = 384) -> int:
    """Integer factor that brings the long side near ``target`` px (thin boundaries when drawn)."""
    return max(1, int(round(target / max(shape[:2]))))


def overlay_ids(img_rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend id colours over the image, upscaled by ``display_factor`` with nearest neighbours, and
    draw the segment boundaries (white) one display pixel wide. Returns uint8 RGB."""
    if img_rgb.shape[:2] != ids.shape:
        raise ValueError(f'image {img_rgb.shape[:2]} and id map {ids.shape} differ in size')
    k = display_factor(ids.shape)
    img = _upscale(img_rgb, k).astype(np.float32) / 255
    big = _upscale(ids, k)
    out = (1 - alpha) * img + alpha * colourise(big)
    out[boundaries(big)] = 1.0
    return (out * 255).round().astype(np.uint8)
