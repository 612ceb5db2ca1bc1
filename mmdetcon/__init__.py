"""Object-level self-supervised pretraining (DetCon, DetCo) for OpenMMLab.

Importing the package registers every mmdetcon class into mmpretrain's registries and installs the
checkpoint loader that keeps ``torch.load(weights_only=True)`` for files mmdetcon did not write.
"""
from . import datasets, engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
