"""Object-level self-supervised pretraining (DetCon, DetCo) for OpenMMLab.

Importing the package registers every mmdetcon class into mmpretrain's registries and installs the
checkpoint loader that unpickles nothing beyond what a training checkpoint holds (mmdetcon.engine), and
makes ``mmdetcon::`` config paths and the ``mmdetcon`` scope resolve (mmdetcon.utils.packaging). The README
lists every side effect ("What `import mmdetcon` changes").
"""
from . import datasets, engine, models  # noqa: F401
from .utils.packaging import register_config_package, register_scope_aliases
from .version import __version__

register_config_package()
register_scope_aliases()

__all__ = ['__version__']
