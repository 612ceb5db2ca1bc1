"""Count the unreadable files the dataset skipped, log them, and stop a run that skips too many."""
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.dist import is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmdetcon.datasets.skip_unreadable import SKIPPED_KEY
from mmdetcon.registry import HOOKS


def skipped_in_batch(data_batch: Any) -> int:
    """Sum of ``skipped_files`` over a collated batch's data samples (0 when absent)."""
    if not isinstance(data_batch, dict):
        return 0
    samples = data_batch.get('data_samples')
    total = 0
    if isinstance(samples, Sequence):
        total = sum(int(s.metainfo.get(SKIPPED_KEY, 0)) for s in samples if hasattr(s, 'metainfo'))
    extra = data_batch.get(SKIPPED_KEY)
    if extra is not None:
        total += int(torch.as_tensor(extra).sum())
    return total


class TooManySkippedFilesError(RuntimeError):
    """More unreadable files than allowed: bad data, reported by the tools as one line."""
    is_input_error = True


@HOOKS.register_module()
class SkippedFilesHook(Hook):
    """Sum, in the main process, the ``skipped_files`` count each sample carries (set by datasets that
    skip unreadable files, e.g. :class:`ImageMaskDataset`, in whatever worker process loaded it).

    Skips are counted per draw: a worker avoids files it found unreadable, but another worker may draw the
    same file as a replacement, so a file can count more than once. The epoch's total over all ranks is
    logged as ``skipped_files`` once non-zero; past ``max_share`` of
    the epoch's samples the run stops. Ranks agree on the total every ``sync_interval`` iterations and
    at the end of an epoch (one all_reduce of one number), so all of them stop together.
    """

    priority = 'NORMAL'  # before LoggerHook, so the scalar is in the same log line

    def __init__(self, max_share: float = 0.01, sync_interval: int = 10) -> None:
        if not 0 <= max_share <= 1:
            raise ValueError(f'SkippedFilesHook: max_share must be in [0, 1], got {max_share}')
        if sync_interval < 1:
            raise ValueError(f'SkippedFilesHook: sync_interval must be >= 1, got {sync_interval}')
        self.max_share = max_share
        self.sync_interval = sync_interval
        self._local = 0
        self._logged = False

    def before_train_epoch(self, runner) -> None:
        self._local = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        self._local += skipped_in_batch(data_batch)
        if not is_distributed() or (batch_idx + 1) % self.sync_interval == 0:
            self._check(runner, self._total())

    def after_train_epoch(self, runner) -> None:
        total = self._total()
        self._check(runner, total)
        if total:
            print_log(f'epoch {runner.epoch + 1}: skipped {total} unreadable files', logger='current')

    def _total(self) -> int:
        if not is_distributed():
            return self._local
        count = torch.tensor([self._local], dtype=torch.float64)
        if dist.get_backend() == 'nccl':
            count = count.cuda()
        dist.all_reduce(count)
        return int(count.item())

    def _check(self, runner, total: int) -> None:
        if total or self._logged:
            runner.message_hub.update_scalar('train/skipped_files', total)
            self._logged = True
        samples = len(runner.train_dataloader.dataset)
        if total > self.max_share * samples:
            raise TooManySkippedFilesError(
                f'{total} unreadable files skipped in epoch {runner.epoch + 1}, more than '
                f'max_share={self.max_share:g} of its {samples} samples; check the data (a broken '
                "mount?) or allow more with custom_hooks=[dict(type='SkippedFilesHook', max_share=...)]")
