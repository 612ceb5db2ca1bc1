"""DeepMind's DetCon weights (Haiku ``ResNetTorso``) -> mmpretrain ResNet state dict.

The released ``.npy`` files hold a dict of Haiku parameters and BN states; their top-level layout is not
documented, so both Haiku forms are read: nested ``{module_path: {name: array}}`` and flat
``{'module_path/name': array}``, optionally inside ``params``/``state``/``online_params``/``online_state``
(``target_*`` and optimiser entries are left out: the online network is exported). Module paths are those of
``ResNetTorso`` built from ``hk.nets.ResNet.BlockGroup`` (``res_net50/~/block_group_0/~/block_0/~/conv_1``);
conv kernels are HWIO and become OIHW; BN ``scale``/``offset`` and the ``average`` of ``mean_ema``/
``var_ema`` become ``weight``/``bias``/``running_mean``/``running_var``. The projector, predictor and the
linear probe (``classifier``) are not part of the backbone and are skipped.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from mmdetcon.utils.cli import UserError
from .resnet_layouts import check_resnet_state, listing

ONLINE_WRAPPERS = ('params', 'state', 'online_params', 'online_state')
HEADS = ('projector', 'predictor', 'classifier')
_ANCHOR = re.compile(r'^(initial_conv|initial_batchnorm|block_group_\d+)$')
# (Haiku module path below the network, torch module prefix)
_MODULES = (
    (re.compile(r'^initial_conv$'), lambda m: 'conv1'),
    (re.compile(r'^initial_batchnorm$'), lambda m: 'bn1'),
    (re.compile(r'^block_group_(\d+)/~/block_(\d+)/~/conv_(\d)$'),
     lambda m: f'layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}'),
    (re.compile(r'^block_group_(\d+)/~/block_(\d+)/~/batchnorm_(\d)$'),
     lambda m: f'layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}'),
    (re.compile(r'^block_group_(\d+)/~/block_(\d+)/~/shortcut_conv$'),
     lambda m: f'layer{int(m[1]) + 1}.{m[2]}.downsample.0'),
    (re.compile(r'^block_group_(\d+)/~/block_(\d+)/~/shortcut_batchnorm$'),
     lambda m: f'layer{int(m[1]) + 1}.{m[2]}.downsample.1'),
)
# (EMA submodule or '', Haiku name) -> torch name; None: known and dropped
_NAMES = {('', 'w'): 'weight', ('', 'scale'): 'weight', ('', 'offset'): 'bias',
          ('mean_ema', 'average'): 'running_mean', ('var_ema', 'average'): 'running_var',
          ('mean_ema', 'counter'): 'num_batches_tracked', ('var_ema', 'counter'): None,
          ('mean_ema', 'hidden'): None, ('var_ema', 'hidden'): None}


@dataclass
class HaikuImport:
    """What :func:`haiku_to_mmpretrain` found in the file."""
    layout: str
    network: str
    depth: int = 0
    skipped: List[str] = field(default_factory=list)


def flatten_haiku(obj: Any) -> Tuple[Dict[str, Any], str]:
    """``{'module_path/name': array}`` from either Haiku form, and a description of the layout found."""
    if not isinstance(obj, dict):
        raise UserError(f'expected a dict of Haiku parameters, found {type(obj).__name__}')
    wrappers = [k for k in obj if k in ONLINE_WRAPPERS]
    sources = [obj[k] for k in wrappers] if wrappers else [obj]
    flat, forms = {}, set()
    for source in sources:
        if not isinstance(source, dict):
            raise UserError(f'expected a dict of Haiku modules, found {type(source).__name__}')
        for key, value in source.items():
            if isinstance(value, dict):
                forms.add('nested {module_path: {name: array}}')
                for name, leaf in value.items():
                    flat[f'{key}/{name}'] = leaf
            else:
                forms.add("flat {'module_path/name': array}")
                flat[key] = value
    layout = ' + '.join(sorted(forms)) or 'empty'
    if wrappers:
        layout += f" inside {', '.join(repr(w) for w in wrappers)}"
        others = [k for k in obj if k not in ONLINE_WRAPPERS]
        if others:
            layout += f" (not read: {', '.join(map(repr, others))})"
    return flat, layout


def _split(key: str) -> Tuple[str, str, str, str]:
    """'res_net50/~/block_group_0/~/block_0/~/batchnorm_0/~/mean_ema/average' -> (network, module, ema, name)."""
    module, _, name = key.rpartition('/')
    parts = module.split('/~/')
    anchor = next((i for i, p in enumerate(parts) if _ANCHOR.match(p)), None)
    if anchor is None:
        return '', module, '', name
    ema = parts.pop() if parts[-1] in ('mean_ema', 'var_ema') else ''
    return '/~/'.join(parts[:anchor]), '/~/'.join(parts[anchor:]), ema, name


def _to_tensor(value: Any, key: str) -> torch.Tensor:
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UserError(f'{key}: not a numeric array ({array.dtype})')
    return torch.from_numpy(np.ascontiguousarray(array))


def haiku_to_mmpretrain(obj: Any, network: Optional[str] = None
                        ) -> Tuple['Dict[str, torch.Tensor]', HaikuImport]:
    """The online ResNet of a loaded DetCon ``.npy`` in mmpretrain names, checked against ResNet-``depth``.

    ``network`` selects the Haiku network name (e.g. ``res_net50``) when the file holds several.
    """
    flat, layout = flatten_haiku(obj)
    backbones: Dict[str, Dict[str, Any]] = {}
    skipped, unknown = set(), []
    for key, value in flat.items():
        net, module, ema, name = _split(key)
        top = module.split('/~/')[0]
        if _ANCHOR.match(top):
            backbones.setdefault(net, {})[key] = (module, ema, name, value)
        elif top in HEADS:
            skipped.add(top)
        else:
            unknown.append(key)
    if not backbones:
        raise UserError(f'no Haiku ResNet modules (initial_conv, block_group_N) in the file ({layout}); '
                        f'keys: {listing(flat)}')
    if network is None and len(backbones) > 1:
        raise UserError(f"the file holds several networks ({', '.join(map(repr, sorted(backbones)))}); "
                        'choose one with --network')
    network = next(iter(backbones)) if network is None else network
    if network not in backbones:
        raise UserError(f"no network '{network}' in the file (found {', '.join(map(repr, sorted(backbones)))})")
    skipped.update(f'{n} (another network)' for n in backbones if n != network)

    state, origin = {}, {}
    for key, (module, ema, name, value) in backbones[network].items():
        prefix = next((fn(m) for pattern, fn in _MODULES for m in [pattern.match(module)] if m), None)
        if prefix is None or (ema, name) not in _NAMES:
            unknown.append(key)
            continue
        target = _NAMES[(ema, name)]
        if target is None:
            continue
        tensor = _to_tensor(value, key)
        if name == 'w':
            if tensor.dim() != 4:
                raise UserError(f'{key}: a conv kernel must be 4-d (HWIO), got shape {tuple(tensor.shape)}')
            tensor = tensor.permute(3, 2, 0, 1)  # HWIO -> OIHW
        elif target == 'num_batches_tracked':
            tensor = tensor.reshape(()).long()
        else:
            if tensor.dim() == 0 or tensor.numel() != tensor.shape[-1]:
                raise UserError(f'{key}: a BN vector must have shape (..., C) with ones elsewhere, '
                                f'got {tuple(tensor.shape)}')
            tensor = tensor.reshape(-1)
        state[f'{prefix}.{target}'] = tensor
        origin[f'{prefix}.{target}'] = key
    if unknown:
        raise UserError(f'{len(unknown)} keys not recognised as DetCon ResNet, projector, predictor or '
                        f'classifier entries ({layout}): {listing(unknown)}')
    state, depth = check_resnet_state(state, source=lambda k: origin.get(k, k))
    return state, HaikuImport(layout=layout, network=network or '(none)', depth=depth, skipped=sorted(skipped))
