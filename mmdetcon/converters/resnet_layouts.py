"""ResNet backbone files: mmpretrain/torchvision and detectron2 key names, checking, writing.

mmpretrain's, mmdet's and torchvision's ResNets share key names (``conv1``, ``bn1``, ``layerN.M.convK``,
``layerN.M.downsample.{0,1}``), so one tensors-only file in that layout loads into all of them with
``init_cfg=dict(type='Pretrained', checkpoint=FILE)``. detectron2 uses ``stem.``/``resN.``/``.norm`` names.
"""
import pickle
import re
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch

from mmdetcon.utils.cli import UserError

LAYOUTS = ('mmpretrain', 'torchvision', 'detectron2')


def listing(names: Iterable[str], limit: int = 12) -> str:
    """'a, b, c' with at most ``limit`` names, then how many more."""
    names = sorted(names)
    more = f' ... and {len(names) - limit} more' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def online_backbone(state: Dict[str, torch.Tensor], prefix: str = 'backbone.') -> Dict[str, torch.Tensor]:
    """``backbone.*`` entries with the prefix stripped (the EMA/key copies live under other prefixes)."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and torch.is_tensor(v)}
    if not out:
        heads = sorted({k.split('.')[0] for k in state})
        raise UserError(f"no '{prefix}*' tensors in the checkpoint (top-level names: {', '.join(heads)})")
    return out


def to_detectron2(state: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """ResNet key names of torchvision/mmpretrain -> detectron2 (stem./resN./conv.norm/shortcut)."""
    model = {}
    for k, v in state.items():
        if k.startswith('fc.'):
            continue
        new = k
        if not k.startswith('layer'):
            new = 'stem.' + new
        new = re.sub(r'^layer(\d)', lambda m: f'res{int(m.group(1)) + 1}', new)
        new = re.sub(r'bn(\d)', r'conv\1.norm', new)
        new = new.replace('downsample.0', 'shortcut').replace('downsample.1', 'shortcut.norm')
        model[new] = v.detach().cpu().numpy()
    return {'model': model, '__author__': 'mmdetcon', 'matching_heuristics': True}


def from_detectron2(model: Dict[str, object]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """detectron2 ResNet names -> mmpretrain names (:func:`to_detectron2` reversed); also {new: old name}.

    Other keys (e.g. a detector's heads) keep their names, so :func:`check_resnet_state` lists them as unknown.
    """
    state, source = {}, {}
    for key, value in model.items():
        new = re.sub(r'^stem\.', '', key)
        new = re.sub(r'^res(\d)', lambda m: f'layer{int(m.group(1)) - 1}', new)
        new = re.sub(r'conv(\d)\.norm', r'bn\1', new)
        new = new.replace('shortcut.norm', 'downsample.1').replace('shortcut', 'downsample.0')
        state[new] = torch.as_tensor(value)
        source[new] = key
    return state, source


def resnet_reference(depth: int) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of mmpretrain's ResNet of ``depth`` (18 ... 152, and 200)."""
    from mmdetcon.models.backbones import ResNetSamePadding  # same names and shapes as mmpretrain's ResNet
    return {k: tuple(v.shape) for k, v in ResNetSamePadding(depth=depth).state_dict().items()}


def infer_depth(keys: Iterable[str]) -> int:
    """ResNet depth from the number of blocks per stage and the block type in mmpretrain key names."""
    from mmdetcon.models.backbones import ResNetSamePadding
    blocks, bottleneck = [0, 0, 0, 0], False
    for key in keys:
        m = re.match(r'layer([1-4])\.(\d+)\.conv(\d)\.', key)
        if m:
            blocks[int(m[1]) - 1] = max(blocks[int(m[1]) - 1], int(m[2]) + 1)
            bottleneck |= m[3] == '3'
    for depth, (block, stages) in ResNetSamePadding.arch_settings.items():
        if tuple(stages) == tuple(blocks) and (block.__name__ == 'Bottleneck') == bottleneck:
            return depth
    kind = 'bottleneck' if bottleneck else 'basic'
    raise UserError(f'{tuple(blocks)} {kind} blocks per stage match no ResNet depth '
                    f'({", ".join(map(str, ResNetSamePadding.arch_settings))})')


def check_resnet_state(state: Dict[str, torch.Tensor], source: Optional[Callable[[str], str]] = None,
                       depth: Optional[int] = None) -> Tuple['OrderedDict[str, torch.Tensor]', int]:
    """Order ``state`` as mmpretrain's ResNet and fail on unknown, missing or mis-shaped keys.

    ``source`` names a key as it was in the input file (for the error message). BN
    ``num_batches_tracked`` counters the input lacks are set to 0.
    """
    source = source or (lambda k: k)
    depth = depth or infer_depth(state)
    reference = resnet_reference(depth)
    for key in reference:
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    problems = []
    unknown = [source(k) for k in state if k not in reference]
    missing = [k for k in reference if k not in state]
    shaped = [f'{source(k)} {tuple(state[k].shape)} (expected {reference[k]})'
              for k in reference if k in state and tuple(state[k].shape) != reference[k]]
    if unknown:
        problems.append(f'{len(unknown)} unknown keys: {listing(unknown)}')
    if missing:
        problems.append(f'{len(missing)} missing (mmpretrain names): {listing(missing)}')
    if shaped:
        problems.append(f'{len(shaped)} mis-shaped: {listing(shaped)}')
    if problems:
        raise UserError(f'not a ResNet-{depth} backbone: ' + '; '.join(problems))
    ordered = OrderedDict((k, state[k].detach().cpu().contiguous()) for k in reference)
    for k, v in ordered.items():
        if v.is_floating_point():
            ordered[k] = v.float()
    return ordered, depth


def save_backbone(state: Dict[str, torch.Tensor], out: str, layout: str = 'mmpretrain') -> None:
    """Write a tensors-only backbone file (``detectron2``: the pickled numpy dict detectron2 reads)."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}' (choose from {', '.join(LAYOUTS)})")
    if layout == 'detectron2':
        with open(out, 'wb') as f:
            pickle.dump(to_detectron2(state), f)
    else:
        torch.save(OrderedDict((k, v.detach().cpu().clone()) for k, v in state.items()), out)
