"""mmdetcon registers into mmpretrain's registries (configs keep ``default_scope='mmpretrain'``)."""
from mmpretrain.registry import (DATASETS, HOOKS, MODELS, RUNNERS,  # noqa: F401
                                 TRANSFORMS)
