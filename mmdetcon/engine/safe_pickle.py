"""A ``pickle_module`` for ``torch.load`` that builds only the objects a training checkpoint holds.

mmengine's checkpoints carry, besides tensors, a message hub with ``HistoryBuffer`` objects and numpy
arrays and scalars: more than torch's ``weights_only`` loader admits, far less than arbitrary pickles.
:class:`Unpickler` resolves a global only if it is in torch's own ``weights_only`` allowlist (tensor and
storage rebuild functions, dtypes, ``OrderedDict``, ``Counter``, ...) or in :data:`EXTRA_GLOBALS`; anything
else raises :class:`UnsafeGlobalError` before it is called. Protocol-2 pickles reach ``HistoryBuffer.min``
etc. through ``getattr``, so ``getattr`` is replaced by a function that admits exactly those (class,
attribute) pairs.
"""
import _compat_pickle
import importlib
import io
import pickle
from typing import Any, Dict, Tuple

from torch._weights_only_unpickler import _get_allowed_globals

#: Globals admitted besides torch's ``weights_only`` allowlist (module path, name).
EXTRA_GLOBALS: Tuple[Tuple[str, str], ...] = (
    ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.multiarray', '_reconstruct'),  # files written with numpy < 2
    ('numpy.core.multiarray', 'scalar'),
)
#: ``getattr(owner, name)`` calls admitted (owner given as module path and name).
GETATTR_PAIRS: Tuple[Tuple[str, str, str], ...] = tuple(
    ('mmengine.logging.history_buffer', 'HistoryBuffer', stat)
    for stat in ('min', 'max', 'mean', 'current'))


class UnsafeGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the allowlist; nothing was called."""

    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found


def _resolve(module: str, name: str) -> Any:
    obj = importlib.import_module(module)
    for part in name.split('.'):
        obj = getattr(obj, part)
    return obj


def _build_allowlist() -> Tuple[Dict[str, Any], Dict[Tuple[int, str], Any]]:
    allowed = dict(_get_allowed_globals())
    for module, name in EXTRA_GLOBALS:
        try:
            allowed[f'{module}.{name}'] = _resolve(module, name)
        except (ImportError, AttributeError):  # e.g. numpy._core on numpy 1.x
            pass
    pairs = {}
    for module, owner, attr in GETATTR_PAIRS:
        cls = _resolve(module, owner)
        pairs[(id(cls), attr)] = getattr(cls, attr)
    return allowed, pairs


_ALLOWED, _GETATTR = _build_allowlist()


def _restricted_getattr(owner: Any, name: str) -> Any:
    value = _GETATTR.get((id(owner), name)) if isinstance(name, str) else None
    if value is None:
        label = getattr(owner, '__qualname__', type(owner).__name__)
        raise UnsafeGlobalError(f'builtins.getattr({label}, {name!r})')
    return value


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only checkpoint globals."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names, as protocol 2 writes builtins ('__builtin__.getattr').
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f'{module}.{name}'
        if full == 'builtins.getattr':
            return _restricted_getattr
        if full in _ALLOWED:
            return _ALLOWED[full]
        raise UnsafeGlobalError(full)


def load(file: io.IOBase, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`Unpickler` (torch calls it for the legacy format's headers)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return Unpickler(io.BytesIO(data), **kwargs).load()

