from .detco_neck import DetCoNeck, regroup_patches  # noqa: F401
from .detcon_neck import DetConNeck  # noqa: F401
