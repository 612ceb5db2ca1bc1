"""Read foreign weight files (``.npy``, ``.npz``, ``.pkl``, ``.pth``) without running code from them.

``np.load(allow_pickle=True)`` and ``pickle.load`` call whatever the file names, so a crafted file can run
shell commands. Here a pickle may only build numpy arrays, numpy scalars, dtypes and plain containers;
torch files are read with ``weights_only=True``. Anything else stops with the name of the refused object.
"""
import collections
import io
import pickle
import re
import zipfile
from typing import Any, Callable, Dict, Tuple

import numpy as np

from mmdetcon.utils.cli import UserError

# torch.save's legacy (non-zip) format starts with this pickled number.
_TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def _latin1_encode(text: str, encoding: str = 'latin1') -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, restricted to latin-1."""
    if encoding not in ('latin1', 'latin-1') or not isinstance(text, str):
        raise pickle.UnpicklingError(f'refused _codecs.encode with encoding {encoding!r}')
    return text.encode('latin1')


def _mapping_as_dict(mapping: Any = None) -> dict:
    """Haiku's immutable mappings (``FlatMap``, ``frozendict``) pickle as ``(cls, (dict,))``: keep the dict."""
    if not isinstance(mapping, dict):
        raise pickle.UnpicklingError(f'a Haiku mapping must wrap a dict, got {type(mapping).__name__}')
    return dict(mapping)


def _numpy_rebuilders() -> Dict[str, Callable]:
    """numpy's own rebuild functions under the module paths numpy 1 and 2 pickle them with."""
    rebuild = {'multiarray._reconstruct': np.ndarray.__reduce__(np.zeros(1))[0],
               'multiarray.scalar': np.float32(0).__reduce__()[0],
               'numeric._frombuffer': np.zeros(1).__reduce_ex__(5)[0]}   # protocol-5 arrays
    return {f'{core}.{name}': fn for core in ('numpy.core', 'numpy._core') for name, fn in rebuild.items()}


def _allowed() -> Dict[Tuple[str, str], Callable]:
    table = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
             ('_codecs', 'encode'): _latin1_encode,
             ('collections', 'OrderedDict'): collections.OrderedDict}
    table.update({tuple(path.rsplit('.', 1)): fn for path, fn in _numpy_rebuilders().items()})
    for name in ('FlatMap', 'FlatMapping', 'frozendict'):
        table[('haiku._src.data_structures', name)] = _mapping_as_dict
    return table


class PlainUnpickler(pickle.Unpickler):
    """Builds only numpy arrays/scalars/dtypes, numbers, strings, bytes and containers."""

    _table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'refusing to unpickle {module}.{name}: only numpy arrays, numbers, strings and '
                'dicts/lists are loaded from foreign files') from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError('refusing a pickle with persistent ids (not a plain data file)')


def _load_npy(f: io.BufferedReader, path: str) -> Any:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise UserError(f'{path}: unsupported .npy format version {version}')
    if not dtype.hasobject:
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)
    array = PlainUnpickler(f).load()  # np.save pickles an object array as a whole
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise UserError(f'{path}: the pickled payload is not the {shape} array its header announces')
    return array.item() if array.shape == () else array


def load_plain(path: str) -> Any:
    """Contents of a ``.npy``/``.npz``, a pickle or a torch file, built from plain data only.

    ``.npy`` object arrays of shape () come back as their item (``np.load(...).item()``).
    Raises :class:`~mmdetcon.utils.cli.UserError` naming the first object the file asked for that is
    not plain data.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_npz = all(name.endswith('.npy') for name in z.namelist())
        if is_npz:  # np.savez: {name: array}, no pickles admitted
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        return _torch_load(path)
    with open(path, 'rb') as f:
        head = f.read(6)
        f.seek(0)
        try:
            if head == b'\x93NUMPY':
                return _load_npy(f, path)
            obj = PlainUnpickler(f).load()
        except pickle.UnpicklingError as e:
            raise UserError(f'{path}: {e}') from None
        except (EOFError, ValueError) as e:
            raise UserError(f'{path}: not a .npy, pickle or torch file ({e})') from None
    if isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:
        return _torch_load(path)
    return obj


def _torch_load(path: str) -> Any:
    """``torch.load(weights_only=True)`` that also admits numpy arrays (e.g. in a checkpoint's meta)."""
    import torch
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]  # numpy 2 builds these
    extra = [np.ndarray, np.dtype, *dtypes] + [(fn, path) for path, fn in _numpy_rebuilders().items()]
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(e))
        what = next(g for g in found.groups() if g) if found else str(e).strip().splitlines()[0]
        raise UserError(f'{path}: refusing to unpickle {what}: only tensors, numpy arrays, numbers, '
                        'strings and containers are loaded from foreign files') from None
