"""DetCo's released checkpoints (``DetCo-200ep``, ``DetCo-200ep-AA``) -> mmpretrain ResNet state dict.

xieenze/DetCo trained with OpenSelfSup and published its files in two forms, both read here:

* OpenSelfSup checkpoints (``torch.save``, any extension): ``{'state_dict': ...}`` or a bare state dict whose
  query backbone is under ``encoder_q.0.`` and ``backbone.`` (full model), ``module.encoder_q.`` (MoCo-style
  DDP) or no prefix (``extract_backbone_weights.py`` output); the key encoder, necks and queues are dropped;
* the detectron2 conversion (``convert-pretrain-to-detectron2.py``): a pickle ``{'model': {'stem.conv1.weight':
  array, 'res2.0.conv1.norm.running_mean': ...}, 'matching_heuristics': True}``.
"""
from typing import Any, Dict, Tuple

import torch

from mmdetcon.utils.cli import UserError
from .resnet_layouts import check_resnet_state, from_detectron2

# Query-backbone prefixes, most specific first (a full OpenSelfSup model holds both encoder_q.0. and backbone.).
PREFIXES = ('module.encoder_q.0.', 'encoder_q.0.', 'module.encoder_q.', 'encoder_q.',
            'module.backbone.', 'backbone.', 'module.', '')


def _state_of(obj: Any) -> Tuple[Dict[str, Any], str]:
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            return obj[wrapper], f"'{wrapper}' of the file"
    if isinstance(obj, dict):
        return obj, 'the file (a bare state dict)'
    raise UserError(f'expected a checkpoint dict, found {type(obj).__name__}')


def detco_to_mmpretrain(obj: Any) -> Tuple['Dict[str, torch.Tensor]', str]:
    """The query ResNet of a loaded DetCo/OpenSelfSup/detectron2 checkpoint, and the layout found."""
    state, where = _state_of(obj)
    if any(k.startswith(('stem.', 'res2.')) for k in state):
        converted, origin = from_detectron2(state)
        backbone, _ = check_resnet_state(converted, source=lambda k: origin.get(k, k))
        return backbone, f'detectron2 names in {where}'
    for prefix in PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if 'conv1.weight' in sub and 'layer1.0.conv1.weight' in sub:
            break
    else:
        heads = sorted({k.split('.')[0] for k in state})
        raise UserError(f"no ResNet (conv1.weight, layer1.0.conv1.weight) under any of the prefixes "
                        f"{', '.join(repr(p) for p in PREFIXES if p)} or none in {where}; "
                        f"top-level names: {', '.join(heads[:20])}")
    fc = [k for k in sub if k.startswith('fc.')]
    tensors = {k: torch.as_tensor(v) for k, v in sub.items() if k not in fc}
    backbone, _ = check_resnet_state(tensors, source=lambda k: prefix + k)
    dropped = len(state) - len(sub) + len(fc)
    return backbone, f"prefix '{prefix}' in {where} ({dropped} other entries dropped)"
