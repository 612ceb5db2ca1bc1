"""Felzenszwalb-Huttenlocher (FH) segment-id maps: compute, store as PNG, load.

DetCon computes one FH map per image, offline, on the full-resolution RGB image (skimage
``felzenszwalb(scale=1000, sigma=0.8, min_size=1000)``). Ids are image-level segment labels and
must never be relabelled per view. Storage here is a single-channel PNG: uint8 while the largest id
fits, uint16 otherwise (ids never wrap, unlike the official uint8 TFRecords).
"""
import os
import os.path as osp
from typing import Optional, Tuple

import cv2
import numpy as np
from PIL import Image, ImageOps

#: DetCon's FH parameters (official ``fh_scales=1000``, ``fh_min_sizes=1000``, skimage's default sigma).
FH_SCALE = 1000
FH_SIGMA = 0.8
FH_MIN_SIZE = 1000
#: zlib level of ``save_id_map``. With PNG filtering off (flat label maps gain nothing from it),
#: level 6 is ~45 % smaller than OpenCV's default (level 3, adaptive filters) for ~2 ms more per
#: 500x375 mask; level 9 saves another ~17 % for ~6x the time (measured in docs/masks.md).
PNG_COMPRESSION = 6
BACKENDS = ('skimage', 'opencv')
_OPENCV_HINT = ("the 'opencv' FH backend needs cv2.ximgproc from OpenCV contrib: "
                'pip install opencv-contrib-python-headless, at exactly the version of the installed '
                'opencv-python(-headless) since both provide cv2 (see docs/masks.md)')
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAP_ORIENTATIONS = (5, 6, 7, 8)


def opencv_fh_available() -> bool:
    """Whether ``cv2.ximgproc.segmentation`` (OpenCV contrib) is importable."""
    return hasattr(cv2, 'ximgproc') and hasattr(cv2.ximgproc, 'segmentation')


def read_rgb(path: str, exif_orientation: bool = True) -> np.ndarray:
    """Decode any image (grey, palette, RGBA, CMYK, 16-bit) to an HxWx3 uint8 RGB array.

    ``exif_orientation`` applies the EXIF rotation, as OpenCV/mmcv's default ``'color'`` decoding does,
    so that the mask has the orientation of the image the training pipeline loads. 16-bit greys are
    reduced by ``>> 8`` (OpenCV's rule); alpha is dropped.
    """
    with Image.open(path) as img:
        if exif_orientation:
            img = ImageOps.exif_transpose(img)
        if img.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
            arr = np.asarray(img).astype(np.int64)
            grey = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        return np.ascontiguousarray(np.asarray(img.convert('RGB'), dtype=np.uint8))


def image_size(path: str, exif_orientation: bool = True) -> Tuple[int, int]:
    """``(height, width)`` of an image from its header (no pixel decoding), after EXIF rotation."""
    with Image.open(path) as img:
        width, height = img.size
        if exif_orientation and img.getexif().get(0x0112) in _SWAP_ORIENTATIONS:
            width, height = height, width
    return height, width


def fh_segment(rgb: np.ndarray, scale: float = FH_SCALE, sigma: float = FH_SIGMA,
               min_size: int = FH_MIN_SIZE, backend: str = 'skimage',
               short_side: Optional[int] = None) -> np.ndarray:
    """FH segment ids (HxW int32, 0..n-1) of an HxWx3 uint8 image.

    ``backend='skimage'`` is the official definition. ``'opencv'`` (``ximgproc`` GraphSegmentation
    with ``k=scale``) is ~3x faster but gives different segments; it is not a drop-in replacement.
    ``short_side`` (off by default): segment a copy resized (area interpolation) so that its short
    side is ``short_side`` px, with ``min_size`` scaled by the area ratio, then nearest-upsample the
    ids to the input size. Images already that small are segmented as they are.
    """
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3
            and rgb.dtype == np.uint8):
        got = f'{type(rgb).__name__} {getattr(rgb, "dtype", "")} {getattr(rgb, "shape", "")}'
        raise ValueError(f'fh_segment expects an HxWx3 uint8 RGB array, got {got}')
    if backend not in BACKENDS:
        raise ValueError(f"unknown FH backend '{backend}', expected one of {BACKENDS}")
    if short_side is not None and short_side < 1:
        raise ValueError(f'short_side must be a positive number of pixels, got {short_side}')
    height, width = rgb.shape[:2]
    factor = 1.0 if short_side is None else short_side / min(height, width)
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))  # cv2 order: (w, h)
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        area_ratio = (size[0] * size[1]) / (width * height)
        small_min_size = max(1, round(min_size * area_ratio))
        ids = _fh(small, scale, sigma, small_min_size, backend)
        return cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)
    return _fh(rgb, scale, sigma, min_size, backend)


def _fh(rgb: np.ndarray, scale: float, sigma: float, min_size: int, backend: str) -> np.ndarray:
    if backend == 'skimage':
        from skimage.segmentation import felzenszwalb
        ids = felzenszwalb(rgb, scale=scale, sigma=sigma, min_size=int(min_size), channel_axis=-1)
    else:
        if not opencv_fh_available():
            raise ImportError(_OPENCV_HINT)
        seg = cv2.ximgproc.segmentation.createGraphSegmentation(
            sigma=float(sigma), k=float(scale), min_size=int(min_size))
        ids = seg.processImage(np.ascontiguousarray(rgb))
    return np.ascontiguousarray(ids, dtype=np.int32)


def encode_id_map(ids: np.ndarray, compression: int = PNG_COMPRESSION) -> bytes:
    """PNG bytes of a 2-D id map: uint8 when ``max id <= 255``, else uint16 (ids never wrap)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f'an id map must be a non-empty 2-D integer array, got {ids.dtype} {ids.shape}')
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high > 65535:
        raise ValueError(f'segment ids must lie in [0, 65535] to be stored as PNG, got [{low}, {high}]')
    arr = ids.astype(np.uint8 if high <= 255 else np.uint16, copy=False)
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    if hasattr(cv2, 'IMWRITE_PNG_FILTER'):  # OpenCV >= 4.10
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buf = cv2.imencode('.png', arr, params)
    if not ok:  # pragma: no cover - OpenCV reports no reason
        raise RuntimeError('OpenCV failed to encode the id map as PNG')
    return buf.tobytes()


def save_id_map(path: str, ids: np.ndarray, compression: int = PNG_COMPRESSION) -> int:
    """Write ``ids`` as a PNG atomically; return the number of bytes written.

    The bytes go to ``path + '.tmp-<pid>'`` in the same directory, then ``os.replace`` moves them to
    ``path``: a killed writer leaves at most a temporary file, never a truncated ``path``.
    """
    data = encode_id_map(ids, compression)
    directory = osp.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return len(data)


def load_id_map(path: str) -> np.ndarray:
    """Read an id map PNG unchanged (HxW uint8 or uint16)."""
    ids = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if ids is None:
        if not osp.isfile(path):
            raise FileNotFoundError(f'id map not found: {path}')
        raise ValueError(f'cannot decode id map (corrupt or not an image): {path}')
    if ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'{path}: an id map must be a single-channel uint8/uint16 PNG, '
                         f'got {ids.dtype} {ids.shape}')
    return ids
