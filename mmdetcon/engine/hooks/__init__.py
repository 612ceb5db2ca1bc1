from .epoch_seed_hook import EpochSeedHook
from .skipped_files_hook import SkippedFilesHook
from .view_visualization_hook import ViewVisualizationHook

__all__ = ['EpochSeedHook', 'SkippedFilesHook', 'ViewVisualizationHook']
