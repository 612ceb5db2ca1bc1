"""Build step of the OpenMMLab package layout; all metadata lives in pyproject.toml.

OpenMMLab tools look for a package's configs, tools and model index under ``<package>/.mim/``: mmengine resolves
``_base_ = 'mmdetcon::detcon/x.py'`` to ``mmdetcon/.mim/configs/detcon/x.py`` after reading
``mmdetcon/.mim/model-index.yml``, and ``mim train|test mmdetcon`` runs ``mmdetcon/.mim/tools/{train,test}.py``.

- A wheel (``pip wheel .``, ``pip install .``, ``python -m build``) gets copies of ``configs/``, ``tools/`` and
  ``model-index.yml`` under ``mmdetcon/.mim/`` in its build directory.
- An editable install (``pip install -e .``) gets symbolic links ``mmdetcon/.mim/* -> ../../*`` in the checkout
  (git-ignored), so edits to the configs are seen at once; where links cannot be made, copies.
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
IGNORED = shutil.ignore_patterns('__pycache__', '*.pyc', '*.pyo')


def add_mim_extension(package_dir: str, mode: str) -> None:
    """Fill ``package_dir/.mim`` with ``MIM_ITEMS`` from the project root, as copies or symlinks."""
    mim = osp.join(package_dir, '.mim')
    os.makedirs(mim, exist_ok=True)
    for item in MIM_ITEMS:
        src, dst = osp.join(ROOT, item), osp.join(mim, item)
        if not osp.exists(src):
            raise FileNotFoundError(f'{src} is missing: the package would ship without it')
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)  # a stale copy from an earlier build
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim), dst, target_is_directory=osp.isdir(src))
                continue
            except OSError:  # e.g. a file system without symlinks: fall back to a copy
                pass
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=IGNORED)
        else:
            shutil.copyfile(src, dst)


class BuildWithMim(build_py):
    """``build_py`` that also writes ``mmdetcon/.mim`` (copies into the build, links in the checkout)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            add_mim_extension(osp.join(ROOT, 'mmdetcon'), 'symlink')
        else:
            add_mim_extension(osp.join(self.build_lib, 'mmdetcon'), 'copy')


setup(cmdclass={'build_py': BuildWithMim})
