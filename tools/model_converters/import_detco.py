"""Import DetCo's released checkpoints (OpenSelfSup ``.pth``/``.pkl`` or detectron2 ``.pkl``) as a backbone file.

``python tools/model_converters/import_detco.py detco_200ep_AA.pkl detco-aa_r50.pth``

Torch files are read with ``weights_only=True`` and pickles without unpickling anything but numpy arrays,
numbers and dicts. The query ResNet is written with mmpretrain key names (also mmdet's and torchvision's).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.converters import LAYOUTS, detco_to_mmpretrain, load_plain, save_backbone  # noqa: E402
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='DetCo-200ep / DetCo-200ep-AA file (.pth or .pkl)')
    parser.add_argument('out', help='output file (.pth; .pkl for detectron2)')
    parser.add_argument('--layout', choices=LAYOUTS, default='mmpretrain')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    if not osp.isfile(args.checkpoint):
        raise UserError(f'file not found: {args.checkpoint}')
    state, layout = detco_to_mmpretrain(load_plain(args.checkpoint))
    save_backbone(state, args.out, args.layout)
    print(f'layout found: {layout}')
    print(f'saved {len(state)} backbone tensors ({args.layout} layout) to {args.out}')


if __name__ == '__main__':
    run_cli(main, parse_args())
