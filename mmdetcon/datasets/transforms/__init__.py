"""Registered data transforms (mask sources, mask-consistent views, DetCo patch sets)."""
from .detco_patches import DetCoLocalPatches, DetCoViews  # noqa: F401
from .felzenszwalb import FelzenszwalbMask  # noqa: F401
from .load_id_map import LoadIdMap  # noqa: F401
from .grid_masks import GridMask  # noqa: F401
from .coco_instance_masks import LoadCocoInstanceIds  # noqa: F401
from .random_resized_crop import DetConRandomResizedCrop  # noqa: F401
from .color_jitter import DetConColorJitter  # noqa: F401
from .gaussian_blur import DetConGaussianBlur  # noqa: F401
from .multi_view_with_mask import MultiViewWithMask, PackDetConInputs  # noqa: F401
from .hue_safe_color_jitter import HueSafeColorJitter, shift_hue  # noqa: F401
