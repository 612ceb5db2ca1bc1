"""Import DeepMind's released DetCon weights (Haiku ``.npy``) as a tensors-only ResNet backbone file.

``python tools/model_converters/import_detcon.py resnet50_detcon_b_imagenet_1k.npy detcon-b_r50.pth``

The file is read without unpickling anything but numpy arrays, numbers and dicts. The online ResNet is
written with mmpretrain key names (also mmdet's and torchvision's), BN running statistics included; heads
are skipped. Haiku pads convolutions as TF ``SAME``: fine-tune with ``ResNetSamePadding`` (the ``*-same_*``
benchmark configs) to run the network exactly as trained, or with the stock ResNet (see the README).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.converters import LAYOUTS, haiku_to_mmpretrain, load_plain, save_backbone  # noqa: E402
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('npy', help='resnet{50,200}_detcon_b_*.npy (or a .pkl/.npz of the same dict)')
    parser.add_argument('out', help='output file (.pth; .pkl for detectron2)')
    parser.add_argument('--layout', choices=LAYOUTS, default='mmpretrain')
    parser.add_argument('--network', help='Haiku network name when the file holds several (e.g. res_net50)')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    if not osp.isfile(args.npy):
        raise UserError(f'file not found: {args.npy}')
    state, found = haiku_to_mmpretrain(load_plain(args.npy), args.network)
    save_backbone(state, args.out, args.layout)
    print(f'layout found: {found.layout}')
    print(f"network '{found.network}': ResNet-{found.depth}; skipped: {', '.join(found.skipped) or 'nothing'}")
    print(f'saved {len(state)} backbone tensors ({args.layout} layout) to {args.out}')


if __name__ == '__main__':
    run_cli(main, parse_args())
