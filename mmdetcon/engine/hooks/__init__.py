from .epoch_seed_hook import EpochSeedHook
from .skipped_files_hook import SkippedFilesHook

__all__ = ['EpochSeedHook', 'SkippedFilesHook']
