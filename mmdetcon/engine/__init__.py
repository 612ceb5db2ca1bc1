from .checkpoint import UnsafeCheckpointError, load_local_checkpoint
from .hooks import EpochSeedHook, SkippedFilesHook, ViewVisualizationHook
from .runner import MMDetConRunner

__all__ = ['EpochSeedHook', 'MMDetConRunner', 'SkippedFilesHook', 'UnsafeCheckpointError',
           'load_local_checkpoint', 'ViewVisualizationHook']
