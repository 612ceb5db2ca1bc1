"""mmdetcon registers into mmpretrain's registries (configs keep ``default_scope='mmpretrain'``)."""
from mmpretrain.registry import (DATASETS, HOOKS, MODELS, OPTIM_WRAPPERS,  # noqa: F401
                                 OPTIMIZERS, RUNNERS, TRANSFORMS)
