"""Export the online (query) backbone of a pretraining checkpoint as a tensor-only file.

``python tools/model_converters/extract_backbone.py CKPT OUT [--layout mmpretrain|torchvision|detectron2]``

The output loads under ``torch.load(weights_only=True)`` and, for ``mmpretrain``/``torchvision`` layouts, with
``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` (no prefix) in mmdet and mmpretrain backbones.
The ``detectron2`` layout is a ``.pkl`` with the key names of detectron2's ResNet (MoCo's conversion rules).
"""
import argparse
import os.path as osp
import pickle
import re
import sys
from typing import Dict

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmdetcon.engine.checkpoint import load_local_checkpoint  # noqa: E402
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='pretraining checkpoint (e.g. work_dirs/x/epoch_200.pth)')
    parser.add_argument('out', help='output file (.pth; .pkl for detectron2)')
    parser.add_argument('--layout', choices=['mmpretrain', 'torchvision', 'detectron2'], default='mmpretrain')
    parser.add_argument('--prefix', default='backbone.', help="key prefix of the network to export")
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    ckpt = load_local_checkpoint(args.checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f'{args.checkpoint} holds no state dict')
    backbone = online_backbone(state, args.prefix)
    if args.layout == 'detectron2':
        with open(args.out, 'wb') as f:
            pickle.dump(to_detectron2(backbone), f)
    else:
        # mmpretrain and torchvision ResNets share key names (conv1, bn1, layerN.M.downsample.{0,1}).
        torch.save({k: v.detach().cpu().clone() for k, v in backbone.items()}, args.out)
    print(f'saved {len(backbone)} backbone tensors ({args.layout} layout) to {args.out}')


if __name__ == '__main__':
    run_cli(main, parse_args())
