"""Resume on torch >= 2.6 without unpickling files of unknown origin.

mmengine 0.10.7 loads every local checkpoint with ``torch.load``'s default, which is
``weights_only=True`` since torch 2.6, so resuming its own checkpoints (which pickle a
``HistoryBuffer``, numpy objects, ...) fails. Instead of switching the default off globally:

* :class:`TrustedCheckpointRunner` signs each checkpoint it writes with an HMAC keyed by a secret
  that never leaves this user's cache directory (``$MMDETCON_CACHE/trust.key``); the signatures
  are kept in ``.mmdetcon_trusted.json`` next to the checkpoints.
* :func:`load_local_checkpoint` (installed as mmengine's loader for local paths when mmdetcon is
  imported) unpickles fully only files whose signature verifies; everything else is loaded with
  ``weights_only=True`` and fails with a message that says what to do.
"""
import hashlib
import hmac
import json
import os
import os.path as osp
import pickle
import secrets
from typing import Any, Optional

import torch
from mmengine.dist import is_distributed, is_main_process
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import CheckpointLoader, Runner

from mmdetcon.registry import RUNNERS

TRUST_FILE = '.mmdetcon_trusted.json'


class UntrustedCheckpointError(RuntimeError):
    """A checkpoint needs full unpickling but was not written by an mmdetcon run of this user."""


def _cache_dir() -> str:
    return os.environ.get('MMDETCON_CACHE', osp.expanduser('~/.cache/mmdetcon'))


def _trust_key() -> bytes:
    path = osp.join(_cache_dir(), 'trust.key')
    if not osp.isfile(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(secrets.token_hex(32))
        try:  # first writer wins, so concurrent ranks agree on one key
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.remove(tmp)
    with open(path) as f:
        return bytes.fromhex(f.read().strip())


def _signature(path: str) -> str:
    mac = hmac.new(_trust_key(), digestmod=hashlib.sha256)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 22), b''):
            mac.update(chunk)
    return mac.hexdigest()


def _read_trust(directory: str) -> dict:
    try:
        with open(osp.join(directory, TRUST_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def sign_checkpoint(path: str) -> None:
    """Mark ``path`` as a file this user's mmdetcon runs may fully unpickle."""
    path = osp.abspath(osp.expanduser(path))
    directory, name = osp.split(path)
    table = _read_trust(directory)
    table[name] = _signature(path)
    tmp = osp.join(directory, f'{TRUST_FILE}.{os.getpid()}.tmp')
    with open(tmp, 'w') as f:
        json.dump(table, f, indent=1, sort_keys=True)
    os.replace(tmp, osp.join(directory, TRUST_FILE))


def is_trusted(path: str) -> bool:
    path = osp.abspath(osp.expanduser(path))
    directory, name = osp.split(path)
    expected = _read_trust(directory).get(name)
    return expected is not None and hmac.compare_digest(expected, _signature(path))


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine loader for local paths: full unpickling only for signed run files."""
    filename = osp.expanduser(filename)
    if not filename:
        raise FileNotFoundError('checkpoint path is empty: set it, e.g. `--cfg-options '
                                'model.backbone.init_cfg.checkpoint=backbone.pth`')
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    if is_trusted(filename):
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UntrustedCheckpointError(
            f'{filename} stores Python objects besides tensors and was not written by an mmdetcon '
            'run of this user, so it is not unpickled (torch weights_only=True). Export its '
            'weights with tools/model_converters/extract_backbone.py, or, if you trust the file, '
            'sign it with tools/misc/trust_checkpoint.py.') from None


CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)


@RUNNERS.register_module()
class TrustedCheckpointRunner(Runner):
    """mmengine ``Runner`` that signs the checkpoints it saves, so ``--resume`` can load them.

    It also lets multi-process runs work without CUDA: torch's SyncBatchNorm has no CPU kernel, so
    there its layers (EMA/key copies included) become per-process BN of the same dimensionality.
    """

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model: torch.nn.Module) -> torch.nn.Module:
        if is_distributed() and not torch.cuda.is_available():
            model = revert_sync_batchnorm(model)
        return super().wrap_model(model_wrapper_cfg, model)

    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        super().save_checkpoint(out_dir, filename, *args, **kwargs)
        path: Optional[str] = osp.join(out_dir, filename)
        if is_main_process() and path is not None and osp.isfile(path):
            sign_checkpoint(path)
