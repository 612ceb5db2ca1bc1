"""Object-level self-supervised pretraining (DetCon, DetCo) for OpenMMLab.

Importing the package registers every mmdetcon class into mmpretrain's registries and installs the
checkpoint loader that unpickles nothing beyond what a training checkpoint holds (mmdetcon.engine).
"""
from . import datasets, engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
