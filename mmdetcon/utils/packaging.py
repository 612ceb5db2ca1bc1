"""mmdetcon as an OpenMMLab package: ``_base_ = 'mmdetcon::detcon/...'`` and the ``mmdetcon`` scope.

How mmengine 0.10.7 reads ``'mmdetcon::detcon/x.py'`` (``Config._get_cfg_path``): the name ``mmdetcon`` must be a
key of ``mmengine.config.utils.MODULE2PACKAGE``; its value N goes to ``is_installed(N)`` and
``get_installed_path(N)``, which give the package directory D; D/.mim/model-index.yml and the metafiles it imports
are read; the file is ``D/.mim/configs/detcon/x.py`` (setup.py writes ``.mim``). Every dict with a ``type`` in that
base then carries ``_scope_='mmdetcon'``, and the registries build it in the registry of scope ``mmdetcon``.

Two things are registered here, at ``import mmdetcon``:

- ``MODULE2PACKAGE['mmdetcon'] = 'mmdetcon.version'``. ``get_installed_path('mmdetcon')`` joins the distribution's
  location with the name, which for a PEP 660 editable install (``pip install -e .``: the dist-info in
  site-packages, the code in the checkout) is a directory that does not exist. ``mmdetcon.version`` is no
  distribution, so mmengine falls back to ``importlib.util.find_spec``, i.e. to the directory of the ``mmdetcon``
  being imported: the wheel's, the editable checkout's or a checkout on ``PYTHONPATH`` alike.
- A child registry of scope ``mmdetcon`` under each of mmpretrain's registries, holding nothing: a name is looked up
  in mmpretrain's registry (where mmdetcon registers everything) and then in mmengine's, as with
  ``default_scope='mmpretrain'``, which mmdetcon's pretraining configs use.

``MMDetConRunner.from_cfg`` (every mmdetcon config's runner) first replaces those ``_scope_='mmdetcon'`` marks with
the config's ``default_scope`` (:func:`rescope`): ``'mmpretrain'`` for the pretraining configs, ``'mmdet'`` for the
detection benchmarks, so each dict is built where the config it came from is built. The aliases serve builds
outside that runner (``MODELS.build(cfg.model)`` in a script) for mmpretrain-scope configs; such a script building
an mmdet benchmark calls ``rescope(list(cfg.values()), cfg.default_scope)`` first.

``register_all_modules`` is the OpenMMLab entry point that ``mmengine.hub.get_model('mmdetcon::...')`` calls.

A script that only calls ``Config.fromfile`` on a config inheriting ``mmdetcon::`` must ``import mmdetcon`` first
(mmengine asserts the key before importing anything); ``tools/train.py``, ``tools/test.py`` and ``mim train|test
mmdetcon`` do.
"""
from typing import Any, List, Optional

from mmengine.registry import Registry

SCOPE = 'mmdetcon'
# Importable, package-level and not a distribution name (see the module docstring).
PACKAGE_LOOKUP = 'mmdetcon.version'


class ScopeAlias(Registry):
    """Empty child registry: lookups go to its parent (mmpretrain's registry), whose lazy imports it triggers."""

    def import_from_location(self) -> None:
        self.parent.import_from_location()


def register_config_package() -> None:
    """Make ``mmdetcon::`` paths resolve in mmengine configs (idempotent)."""
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault(SCOPE, PACKAGE_LOOKUP)


def register_scope_aliases() -> List[str]:
    """Add a ``mmdetcon``-scope child to each of mmpretrain's registries (idempotent); returns their names."""
    from mmpretrain import registry as mmpretrain_registry
    names = []
    for attr in dir(mmpretrain_registry):
        parent = getattr(mmpretrain_registry, attr)
        if not isinstance(parent, Registry) or parent.scope != 'mmpretrain':
            continue
        if SCOPE not in parent.children:
            ScopeAlias(parent.name, parent=parent, scope=SCOPE)
        names.append(attr)
    return names


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register every mmdetcon module (``import mmdetcon``); with ``init_default_scope`` and no current default
    scope, make ``mmpretrain`` the default scope, the one mmdetcon's pretraining configs use."""
    import mmdetcon  # noqa: F401  (registers everything, see mmdetcon/__init__.py)
    from mmengine.registry import DefaultScope
    if init_default_scope and DefaultScope.get_current_instance() is None:
        DefaultScope.get_instance('mmdetcon', scope_name='mmpretrain')


def rescope(node: Any, scope: Optional[str]) -> int:
    """Replace ``_scope_='mmdetcon'`` by ``scope`` (drop it for ``None``) in nested dicts and lists, in place;
    returns how many marks were replaced. Pass the values of a Config (``cfg.values()``), not the Config."""
    count = 0
    if isinstance(node, dict):
        if node.get('_scope_') == SCOPE:
            if scope is None:
                del node['_scope_']
            else:
                node['_scope_'] = scope
            count += 1
        values = node.values()
    elif isinstance(node, (list, tuple)):
        values = node
    else:
        return 0
    return count + sum(rescope(value, scope) for value in values)
