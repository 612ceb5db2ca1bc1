from .detco import DetCo  # noqa: F401
from .detcon import DetConB, DetConS  # noqa: F401
