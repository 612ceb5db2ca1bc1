"""How close the stock (symmetric-padding) ResNet's features are to the SAME-padded one Haiku weights were trained as.

    python tools/analysis/same_padding_gap.py [--checkpoint detcon-b_r50.pth] [--depth 50] [--size 224] [--json F]

Both networks get the same weights (an imported backbone file, or without ``--checkpoint`` a Kaiming-initialised
ResNet whose BN statistics are calibrated on the images) and the same images: the colour photographs shipped with
scikit-image and their mirror images, short side resized to ``--size``, centre crop, ImageNet normalisation.
Per stage it prints the cosine similarity of the two channel vectors at every feature-map cell (mean, 5th
percentile, and the mean over cells not on the border), the cosine of whole feature maps, and the mean cell cosine
after shifting the stock map by one cell: at stride 2 SAME pads only after, the stock network before and after,
so the stock network samples a grid 1 + 2 + ... px earlier (3, 7, 15, 31 px at res2..res5, about one cell).
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.models.backbones import ResNetSamePadding  # noqa: E402
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina')
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def photos(size: int) -> torch.Tensor:
    """scikit-image's colour photographs and their mirror images as a normalised [N, 3, size, size] batch."""
    import skimage.data
    batch = []
    for name in PHOTOS:
        img = torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])).permute(2, 0, 1)
        img = img.float()[None]
        h, w = img.shape[-2:]
        scale = size / min(h, w)
        img = F.interpolate(img, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                            mode='bilinear', align_corners=False, antialias=True)
        top, left = (img.shape[-2] - size) // 2, (img.shape[-1] - size) // 2
        img = img[..., top:top + size, left:left + size]
        batch += [img, img.flip(-1)]
    x = torch.cat(batch)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def cell_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.double(), b.double(), dim=1)  # [N, H, W]


def compare(same: List[torch.Tensor], stock: List[torch.Tensor]) -> Dict[str, Dict[str, float]]:
    out = {}
    for stage, (a, b) in enumerate(zip(same, stock), start=2):
        cos = cell_cosine(a, b)
        inner = cos[:, 1:-1, 1:-1]
        shifted = cell_cosine(a[..., :-1, :-1], b[..., 1:, 1:])  # stock cell i+1 ~ SAME cell i
        whole = F.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1)
        out[f'res{stage}'] = dict(
            grid=f'{a.shape[-2]}x{a.shape[-1]}', cell_mean=cos.mean().item(),
            cell_p5=cos.flatten().quantile(0.05).item(), interior_mean=inner.mean().item() if inner.numel() else
            float('nan'), whole_map=whole.mean().item(), shifted_one_cell_mean=shifted.mean().item())
    return out


def build(depth: int, checkpoint: str, images: torch.Tensor):
    from mmpretrain.models import ResNet
    same = ResNetSamePadding(depth=depth, out_indices=(0, 1, 2, 3), zero_init_residual=False)
    if checkpoint:
        if not osp.isfile(checkpoint):
            raise UserError(f'checkpoint not found: {checkpoint}')
        state = torch.load(checkpoint, map_location='cpu', weights_only=True)
        same.load_state_dict(state)
    else:  # Kaiming weights, BN statistics of the SAME network on these images (cumulative average)
        torch.manual_seed(0)
        for m in same.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        same.train()
        with torch.no_grad():
            same(images)
        for m in same.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
    stock = ResNet(depth=depth, out_indices=(0, 1, 2, 3))
    stock.load_state_dict(same.state_dict())
    same.eval()
    stock.eval()
    return same, stock


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', default='', help='backbone file (e.g. from import_detcon.py)')
    parser.add_argument('--depth', type=int, default=50)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--json', help='write the figures here')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    images = photos(args.size)
    same, stock = build(args.depth, args.checkpoint, images)
    with torch.no_grad():
        figures = compare(same(images), stock(images))
    weights = args.checkpoint or 'Kaiming init, BN calibrated on the images'
    print(f'ResNet-{args.depth}, {len(images)} images at {args.size} px, weights: {weights}')
    print('stage  grid    cell cos mean  p5      interior  whole map  shifted 1 cell')
    for stage, f in figures.items():
        print(f"{stage:6s} {f['grid']:7s} {f['cell_mean']:13.4f}  {f['cell_p5']:.4f}  {f['interior_mean']:8.4f}"
              f"  {f['whole_map']:9.4f}  {f['shifted_one_cell_mean']:14.4f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(depth=args.depth, size=args.size, weights=weights, images=len(images),
                           stages=figures), f, indent=2)


if __name__ == '__main__':
    run_cli(main, parse_args())
