"""Load any local checkpoint without running code from it, on any machine, with no key.

mmengine 0.10.7 loads local checkpoints with ``torch.load``'s default (``weights_only=True`` since
torch 2.6), which refuses its own resume files (message hub, numpy values). Importing mmdetcon
registers :func:`load_local_checkpoint` as mmengine's loader for local paths, so ``--resume``,
``load_from`` and ``Pretrained`` init_cfgs all load with ``weights_only=True`` or, for files that need
more, through :mod:`.safe_pickle`: tensors, plain containers, numpy arrays and mmengine's history buffers,
nothing else.
"""
import os.path as osp
import pickle
from typing import Any

import torch
from mmengine.runner import CheckpointLoader

from . import safe_pickle


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds a Python object that a training checkpoint never contains."""
    is_input_error = True  # the tools report it in one line


def load_local_checkpoint(filename: str, map_location: Any = None) -> Any:
    """mmengine loader for local paths: restricted unpickling (see :mod:`.safe_pickle`)."""
    filename = osp.expanduser(filename)
    if not filename:
        raise FileNotFoundError('checkpoint path is empty: set it, e.g. `--cfg-options '
                                'model.backbone.init_cfg.checkpoint=backbone.pth`')
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:  # torch's own loader first: exported weights and foreign tensor files need no more
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        pass
    try:
        return torch.load(filename, map_location=map_location, weights_only=False,
                          pickle_module=safe_pickle)
    except safe_pickle.UnsafeGlobalError as exc:
        raise UnsafeCheckpointError(
            f'{filename} was not loaded: it refers to {exc.found}, which a checkpoint never contains '
            '(only tensors, containers, numbers, strings, numpy arrays and mmengine history buffers '
            'are unpickled); nothing in the file was run') from None


CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
