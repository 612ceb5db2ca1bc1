"""Export the online (query) backbone of a pretraining checkpoint as a tensor-only file.

``python tools/model_converters/extract_backbone.py CKPT OUT [--layout mmpretrain|torchvision|detectron2]``

The output loads under ``torch.load(weights_only=True)`` and, for ``mmpretrain``/``torchvision`` layouts, with
``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` (no prefix) in mmdet and mmpretrain backbones.
The ``detectron2`` layout is a ``.pkl`` with the key names of detectron2's ResNet (MoCo's conversion rules).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.converters.resnet_layouts import LAYOUTS, online_backbone, save_backbone  # noqa: E402
from mmdetcon.engine.checkpoint import load_local_checkpoint  # noqa: E402
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='pretraining checkpoint (e.g. work_dirs/x/epoch_200.pth)')
    parser.add_argument('out', help='output file (.pth; .pkl for detectron2)')
    parser.add_argument('--layout', choices=LAYOUTS, default='mmpretrain')
    parser.add_argument('--prefix', default='backbone.', help="key prefix of the network to export")
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    ckpt = load_local_checkpoint(args.checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f'{args.checkpoint} holds no state dict')
    backbone = online_backbone(state, args.prefix)
    # mmpretrain and torchvision ResNets share key names (conv1, bn1, layerN.M.downsample.{0,1}).
    save_backbone(backbone, args.out, args.layout)
    print(f'saved {len(backbone)} backbone tensors ({args.layout} layout) to {args.out}')


if __name__ == '__main__':
    run_cli(main, parse_args())
