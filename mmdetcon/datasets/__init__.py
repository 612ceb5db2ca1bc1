from . import transforms  # noqa: F401
from .shapes import SHAPES_CLASSES, ShapesDataset, make_shapes  # noqa: F401
from .image_mask_dataset import ImageMaskDataset  # noqa: F401
from .coco_mask_dataset import CocoMaskDataset  # noqa: F401
from .shapes_multilabel import ShapesMultiLabelDataset  # noqa: F401
