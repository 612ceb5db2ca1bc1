from .checkpoint import UnsafeCheckpointError, load_local_checkpoint
from .hooks import EpochSeedHook, SkippedFilesHook, ViewVisualizationHook
from .optim_wrappers import CPUAmpOptimWrapper, amp_optim_wrapper_cfg
from .optimizers import ForeachLARS
from .runner import MMDetConRunner

__all__ = ['CPUAmpOptimWrapper', 'EpochSeedHook', 'ForeachLARS', 'MMDetConRunner', 'SkippedFilesHook',
           'UnsafeCheckpointError', 'amp_optim_wrapper_cfg', 'load_local_checkpoint', 'ViewVisualizationHook']
