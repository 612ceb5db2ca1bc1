"""Skip unreadable images and masks while training instead of ending the run.

A dataset mixing in :class:`SkipUnreadableMixin` runs its pipeline one transform at a time. A failure to
read a file (any error of an image loader, an ``OSError`` or :class:`UnreadableFileError` of any other
transform, e.g. ``LoadIdMap``) skips the sample with one warning naming the file and draws another; other
errors, such as a mask whose size differs from its image's, still end the run. The number of draws skipped
travels with the next good sample (``data_samples.metainfo['skipped_files']``), from whichever DataLoader
worker produced it, to ``SkippedFilesHook`` in the main process, which logs it and enforces the limit.
"""
import glob
import json
import logging
import os.path as osp
from typing import Any, List, Optional, Set

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

SKIPPED_KEY = 'skipped_files'  # the key SkippedFilesHook sums


class UnreadableFileError(ValueError):
    """A file exists but cannot be decoded (corrupt, truncated, not an image)."""
    is_input_error = True  # the tools report it in one line


class _Unreadable(Exception):
    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(path)
        self.path, self.cause = path, cause


def failed_images(mask_root: Optional[str]) -> Set[str]:
    """Image paths (relative to the image root) listed as failed in ``mask_root/summary*.json``, the
    summaries ``tools/masks/generate_masks.py`` writes (one per shard)."""
    if not mask_root or '://' in mask_root:
        return set()
    failed = set()
    for path in sorted(glob.glob(osp.join(mask_root, 'summary*.json'))):
        try:
            with open(path, encoding='utf-8') as f:
                summary = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f'cannot read the mask summary {path}: {exc}') from None
        failed.update(item['path'] for item in summary.get('failures', []))
    return failed


def drop_failed(rels: List[str], mask_root: Optional[str], exclude: bool = True) -> Set[str]:
    """The subset of ``rels`` listed as failed under ``mask_root`` and still without a mask (logged when not
    empty): a later run that produced the mask brings the image back."""
    failed = failed_images(mask_root).intersection(rels) if exclude else set()
    dropped = {rel for rel in failed if not osp.exists(osp.join(mask_root, osp.splitext(rel)[0] + '.png'))}
    if dropped:
        print_log(f'left out {len(dropped)} images listed as failed in {mask_root}/summary*.json '
                  f'(e.g. {sorted(dropped)[0]})', logger='current', level=logging.WARNING)
    return dropped


class SkipUnreadableMixin:
    """For mmengine ``BaseDataset`` subclasses: skip samples whose files cannot be read (training only).

    The dataset class sets nothing; ``max_refetch`` (mmengine's, default 1000) bounds the draws for one
    item, so a dataset that cannot read anything fails instead of looping.
    """

    def prepare_data(self, idx: int) -> Any:
        results = self.get_data_info(idx)
        for transform in self.pipeline.transforms:
            try:
                results = transform(results)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised unless unreadable
                if self.test_mode:
                    raise
                if isinstance(transform, LoadImageFromFile):
                    raise _Unreadable(getattr(exc, 'filename', None) or results.get('img_path'), exc)
                if isinstance(exc, (OSError, UnreadableFileError)):
                    raise _Unreadable(getattr(exc, 'filename', None) or results.get('seg_map_path')
                                      or results.get('img_path'), exc)
                raise
            if results is None:
                return None
        return results

    def __getitem__(self, idx: int) -> Any:
        if not self._fully_initialized:
            self.full_init()
        if self.test_mode:
            return super().__getitem__(idx)
        bad: Set[int] = getattr(self, '_unreadable', set())
        self._unreadable = bad
        skipped, last = 0, None
        for _ in range(self.max_refetch + 1):
            try:
                data = self.prepare_data(idx)
            except _Unreadable as exc:
                skipped, last = skipped + 1, exc
                if idx not in bad:
                    bad.add(idx)
                    print_log(f'skipped unreadable file {exc.path} ({type(exc.cause).__name__}: '
                              f'{exc.cause}); another sample is drawn', logger='current',
                              level=logging.WARNING)
                idx = self._draw_other(bad)
                continue
            if data is None:  # a transform asked for another sample (mmengine's convention)
                idx = self._draw_other(bad)
                continue
            self._attach_skipped(data, skipped)
            return data
        cause = f'; last: {last.path} ({last.cause})' if last else ''
        raise RuntimeError(f'{type(self).__name__}: no usable sample in {self.max_refetch + 1} draws'
                           f'{cause}')

    def _draw_other(self, bad: Set[int]) -> int:
        """A random index, avoiding those already found unreadable (in this process)."""
        if len(bad) >= len(self):
            return int(np.random.randint(0, len(self)))
        while True:
            idx = int(np.random.randint(0, len(self)))
            if idx not in bad:
                return idx

    @staticmethod
    def _attach_skipped(data: Any, skipped: int) -> None:
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if hasattr(samples, 'set_metainfo'):
            samples.set_metainfo({SKIPPED_KEY: skipped})
        elif isinstance(data, dict):
            data[SKIPPED_KEY] = skipped
