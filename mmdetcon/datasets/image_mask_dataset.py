"""Image folders (ImageNet style) with a mirrored tree of precomputed segment-id maps."""
import logging
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.fileio import get_file_backend, list_dir_or_file, list_from_file
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset

from mmdetcon.registry import DATASETS
from .skip_unreadable import SkipUnreadableMixin, drop_failed

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def mask_root_check(mask_root: Optional[str], img_root: str, allow_missing: bool) -> None:
    """Raise a FileNotFoundError that says how to generate masks when ``mask_root`` is absent."""
    if mask_root is None or osp.isdir(mask_root) or '://' in mask_root:
        return
    hint = (f'generate them with `python tools/masks/generate_masks.py --img-root {img_root} '
            f'--out-root {mask_root}`')
    if not allow_missing:
        raise FileNotFoundError(f'mask root {mask_root} not found: {hint}, or set '
                                "allow_missing_masks=True with LoadIdMap(fallback='felzenszwalb') "
                                'to compute Felzenszwalb masks online (slow)')
    print_log(f'mask root {mask_root} not found; the pipeline must compute masks online '
              f"(LoadIdMap(fallback='felzenszwalb') or FelzenszwalbMask). To precompute: {hint}",
              logger='current', level=logging.WARNING)


@DATASETS.register_module()
class ImageMaskDataset(SkipUnreadableMixin, BaseDataset):
    """Images listed in ``ann_file`` (or found under ``data_prefix``) plus their id-map paths.

    ``ann_file`` lines are ``relative/path.JPEG [label]`` (mmpretrain's ImageNet ``meta/train.txt``);
    without ``ann_file`` the image folder is scanned recursively (sorted). Each data info has
    ``img_path`` and, when ``mask_root`` is set, ``seg_map_path`` = ``mask_root`` + the image's path
    relative to the image folder with a ``.png`` suffix (the layout written by
    ``tools/masks/generate_masks.py``), to be read by ``LoadIdMap``. While training, an unreadable image
    or id map is skipped (:class:`SkipUnreadableMixin`).

    Args:
        data_root: root joined to relative ``ann_file``, ``data_prefix`` and ``mask_root``.
        data_prefix: image folder (str or ``dict(img_path=...)``).
        ann_file: optional list file.
        mask_root: id-map folder mirroring the image tree; None when masks are computed online.
        with_label: keep the labels of ``ann_file`` as ``gt_label`` (not needed for pretraining).
        allow_missing_masks: accept a missing ``mask_root`` (warn instead of raising); pair it with
            ``LoadIdMap(fallback='felzenszwalb')``, which computes FH online for absent files.
        extensions: image suffixes of the folder scan (case-insensitive).
        exclude_failed: leave out the images that ``generate_masks.py`` listed as failed in
            ``mask_root/summary*.json``.
    """

    def __init__(self,
                 data_root: str = '',
                 data_prefix='',
                 ann_file: str = '',
                 mask_root: Optional[str] = None,
                 with_label: bool = False,
                 allow_missing_masks: bool = False,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 exclude_failed: bool = True,
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        self.exclude_failed = exclude_failed
        if mask_root is not None and data_root and not osp.isabs(mask_root) and \
                '://' not in mask_root:
            mask_root = osp.join(data_root, mask_root)
        self.mask_root = mask_root
        self.with_label = with_label
        self.allow_missing_masks = allow_missing_masks
        self.extensions = tuple(e.lower() for e in extensions)
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         pipeline=pipeline, **kwargs)

    def _samples(self) -> List[tuple]:
        """(relative image path, label or None) pairs."""
        if self.ann_file:
            samples = []
            for line_no, line in enumerate(list_from_file(self.ann_file), 1):
                line = line.strip()
                if not line:
                    continue
                parts = line.rsplit(' ', 1)
                if len(parts) == 2 and parts[1].lstrip('-').isdigit():
                    samples.append((parts[0], int(parts[1])))
                elif self.with_label:
                    raise ValueError(f'{self.ann_file}:{line_no}: expected "path label", got '
                                     f'{line!r} (set with_label=False for unlabelled lists)')
                else:
                    samples.append((line, None))
            return samples
        files = list_dir_or_file(self.img_prefix, list_dir=False, recursive=True)
        rels = sorted(f for f in files if f.lower().endswith(self.extensions))
        if not rels:
            raise FileNotFoundError(f'no image ({", ".join(self.extensions)}) under '
                                    f'{self.img_prefix}')
        return [(rel, None) for rel in rels]

    def load_data_list(self) -> List[dict]:
        mask_root_check(self.mask_root, self.img_prefix, self.allow_missing_masks)
        backend = get_file_backend(self.img_prefix, enable_singleton=True)
        samples = self._samples()
        dropped = drop_failed([rel for rel, _ in samples], self.mask_root, self.exclude_failed)
        data_list = []
        for rel, label in samples:
            if rel in dropped:
                continue
            info = dict(img_path=backend.join_path(self.img_prefix, rel))
            if self.with_label and label is not None:
                info['gt_label'] = label
            if self.mask_root is not None:
                info['seg_map_path'] = osp.join(self.mask_root, osp.splitext(rel)[0] + '.png')
            data_list.append(info)
        return data_list

    def extra_repr(self) -> List[str]:
        return super().extra_repr() + [f'Mask root: \t{self.mask_root}']
