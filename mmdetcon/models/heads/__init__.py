from .detcon_head import DetConHead  # noqa: F401
