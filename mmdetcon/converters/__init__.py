"""Importers and exporters of ResNet backbone weights (DeepMind DetCon, DetCo, detectron2, torchvision)."""
from .detco_checkpoint import detco_to_mmpretrain  # noqa: F401
from .haiku_resnet import HaikuImport, flatten_haiku, haiku_to_mmpretrain  # noqa: F401
from .plain_pickle import PlainUnpickler, load_plain  # noqa: F401
from .resnet_layouts import (LAYOUTS, check_resnet_state, from_detectron2, online_backbone,  # noqa: F401
                             save_backbone, to_detectron2)
