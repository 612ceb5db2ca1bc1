"""Load a precomputed per-image segment-id map (PNG, uint8 or uint16)."""
import logging
import os.path as osp
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.fileio import get
from mmengine.logging import print_log

from mmdetcon.registry import TRANSFORMS
from ..skip_unreadable import UnreadableFileError
from .felzenszwalb import FelzenszwalbMask

GENERATE_HINT = ('generate the masks with `python tools/masks/generate_masks.py '
                 '--img-root <image root> --out-root <mask root>`')


def id_map_path(img_path: str, img_root: str, mask_root: str) -> str:
    """Mask path mirroring the image tree: ``mask_root/<path relative to img_root>.png``."""
    rel = osp.relpath(img_path, img_root)
    if rel.startswith('..'):
        raise ValueError(f'image {img_path} is not under the image root {img_root}')
    return osp.join(mask_root, osp.splitext(rel)[0] + '.png')


def decode_id_map(content: bytes, path: str) -> np.ndarray:
    """Decode PNG bytes into an (H, W) int32 id map, keeping 16-bit values."""
    ids = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise UnreadableFileError(f'could not decode the id map {path}')
    if ids.ndim == 3 and ids.shape[2] == 1:
        ids = ids[..., 0]
    if ids.ndim != 2:
        raise ValueError(f'id map {path} has {ids.shape[2]} channels; expected a single-channel '
                         '(grey, uint8 or uint16) PNG of segment ids')
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f'id map {path} has dtype {ids.dtype}; expected integer ids')
    return ids.astype(np.int32)


@TRANSFORMS.register_module()
class LoadIdMap(BaseTransform):
    """Load ``results['gt_seg_map']`` (H, W) int32 from a single-channel PNG of segment ids.

    The path is ``results['seg_map_path']`` (set by ``ImageMaskDataset`` / ``CocoMaskDataset``), or,
    when both ``mask_root`` and ``img_root`` are given, ``mask_root`` mirroring ``img_path``
    relative to ``img_root`` with a ``.png`` suffix. The map must have the size of
    ``results['img']`` (load the image first).

    Args:
        mask_root, img_root: optional roots to derive the mask path from ``img_path``.
        fallback: None (a missing map is an error) or 'felzenszwalb' (compute FH online on the
            loaded image instead, with ``fallback_cfg`` as FH parameters).
        fallback_cfg: ``FelzenszwalbMask`` arguments of the fallback (DetCon's defaults if
            empty).
        backend_args: mmengine file backend arguments.
    """

    def __init__(self,
                 mask_root: Optional[str] = None,
                 img_root: Optional[str] = None,
                 fallback: Optional[str] = None,
                 fallback_cfg: Optional[dict] = None,
                 backend_args: Optional[dict] = None) -> None:
        if (mask_root is None) != (img_root is None):
            raise ValueError('LoadIdMap: give both mask_root and img_root, or neither')
        if fallback not in (None, 'felzenszwalb'):
            raise ValueError(f"LoadIdMap: fallback must be None or 'felzenszwalb', got {fallback!r}")
        self.mask_root = mask_root
        self.img_root = img_root
        self.fallback = fallback
        self.fallback_cfg = dict(fallback_cfg or {})
        self._fh = FelzenszwalbMask(**self.fallback_cfg) if fallback else None
        self.backend_args = backend_args
        self._warned = False

    def _path(self, results: dict) -> Optional[str]:
        if self.mask_root is not None:
            return id_map_path(results['img_path'], self.img_root, self.mask_root)
        return results.get('seg_map_path')

    def _fallback(self, results: dict, reason: str) -> dict:
        if not self._warned:
            fh = self._fh
            print_log(f'{reason}; computing masks online with {fh!r} (slow). To precompute them, '
                      f'add `--scale {fh.scale} --sigma {fh.sigma} --min-size {fh.min_size}` to: '
                      f'{GENERATE_HINT}.', logger='current', level=logging.WARNING)
            self._warned = True
        return self._fh(results)

    def transform(self, results: dict) -> dict:
        path = self._path(results)
        if path is None:
            if self.fallback == 'felzenszwalb':
                return self._fallback(results, f'no id map path for {results.get("img_path")}')
            raise KeyError(f'LoadIdMap: no `seg_map_path` for image {results.get("img_path")}; '
                           'set `mask_root` in the dataset or LoadIdMap')
        try:
            content = get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            if self.fallback == 'felzenszwalb':
                return self._fallback(results, f'missing id map {path}')
            raise FileNotFoundError(f'id map not found: {path}; {GENERATE_HINT}, or set '
                                    "LoadIdMap(fallback='felzenszwalb') to compute FH online") from None
        ids = decode_id_map(content, path)
        if 'img' in results:
            img_hw = tuple(results['img'].shape[:2])
        else:
            img_hw = tuple(results.get('ori_shape', ids.shape))
        if tuple(ids.shape) != img_hw:
            raise ValueError(f'id map {path} has size {ids.shape[0]}x{ids.shape[1]} (HxW) but its '
                             f'image {results.get("img_path")} is {img_hw[0]}x{img_hw[1]}')
        results['gt_seg_map'] = ids
        results['seg_map_path'] = path  # named by MultiViewWithMask's id check
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mask_root={self.mask_root!r}, '
                f'img_root={self.img_root!r}, fallback={self.fallback!r}, '
                f'fallback_cfg={self.fallback_cfg})')
