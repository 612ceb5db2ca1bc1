"""Generate the synthetic shapes dataset: ``python tools/data/make_shapes.py --out data/shapes``.

Writes ``{out}/{split}/{images,semantic,instance}/*.png`` and ``{out}/annotations/instances_{split}.json``
(see ``mmdetcon/datasets/shapes.py``); ``--preview grid.png`` also saves a picture of the first images
with their instance masks overlaid.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Generate the synthetic shapes dataset')
    parser.add_argument('--out', default='data/shapes', help='dataset root')
    parser.add_argument('--num-images', type=int, default=256, help='images per split')
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--workers', type=int, default=0, help='generation processes (0: in-process)')
    parser.add_argument('--shape-only', action='store_true',
                        help='the class is the shape alone; colour and texture are drawn independently of it')
    parser.add_argument('--object-size', type=float, nargs=2, default=(0.09, 0.2), metavar=('MIN', 'MAX'),
                        help='range of object radii, as a fraction of the image side')
    parser.add_argument('--num-objects', type=int, nargs=2, default=(2, 6), metavar=('MIN', 'MAX'),
                        help='range of objects drawn per image (before dropping nearly hidden ones)')
    parser.add_argument('--style', choices=('textured', 'flat'), default='textured',
                        help='flat: plain grey objects on a plain background (nothing but shapes)')
    parser.add_argument('--overwrite', action='store_true',
                        help='regenerate a split made with other parameters')
    parser.add_argument('--preview', metavar='PNG', help='save a grid of the first images with instance overlays')
    parser.add_argument('--preview-count', type=int, default=8)
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')
    return parser.parse_args()


def _overlay(img_rgb, instance, categories):
    """Image with each instance tinted, outlined and labelled by class id (BGR, for cv2)."""
    import cv2
    import numpy as np
    out = img_rgb[..., ::-1].astype(np.float32)
    palette = np.random.default_rng(0).integers(60, 256, (int(instance.max()) + 1, 3))
    for k in range(1, int(instance.max()) + 1):
        mask = instance == k
        out[mask] = 0.45 * out[mask] + 0.55 * palette[k]
    out = out.astype(np.uint8)
    for k in range(1, int(instance.max()) + 1):
        mask = (instance == k).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
        ys, xs = np.nonzero(mask)
        cv2.putText(out, str(categories[k - 1]), (int(xs.mean()) - 4, int(ys.mean()) + 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def save_preview(path: str, root: str, split: str, count: int) -> None:
    """A grid of ``count`` (image | overlay) pairs read back from disk, 4 pairs per row."""
    import cv2
    import numpy as np
    from pycocotools.coco import COCO
    coco = COCO(osp.join(root, 'annotations', f'instances_{split}.json'))
    cells: List[np.ndarray] = []
    for img_id in sorted(coco.getImgIds())[:count]:
        info = coco.loadImgs(img_id)[0]
        img = cv2.imread(osp.join(root, split, 'images', info['file_name']))[..., ::-1]
        instance = cv2.imread(osp.join(root, split, 'instance', info['file_name']), cv2.IMREAD_UNCHANGED)
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=img_id)), key=lambda a: a['id'])
        cell = np.concatenate([img[..., ::-1], _overlay(img, instance, [a['category_id'] for a in anns])], 1)
        scale = max(1, 256 // img.shape[0])
        cells.append(cv2.resize(cell, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    cols = min(4, len(cells))
    while len(cells) % cols:
        cells.append(np.zeros_like(cells[0]))
    pad = lambda c: cv2.copyMakeBorder(c, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=(40, 40, 40))  # noqa: E731
    rows = [np.concatenate([pad(c) for c in cells[r:r + cols]], 1) for r in range(0, len(cells), cols)]
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, np.concatenate(rows, 0)):
        raise UserError(f'could not write preview {path}')


def main(args: argparse.Namespace) -> None:
    from mmdetcon.datasets.shapes import make_shapes, shapes_classes
    for split in args.splits:
        try:
            s = make_shapes(args.out, args.num_images, args.image_size, args.seed, split,
                            num_workers=args.workers, overwrite=args.overwrite, shape_only=args.shape_only,
                            object_size=args.object_size, num_objects=args.num_objects, style=args.style)
        except ValueError as e:
            raise UserError(str(e)) from None
        where = osp.join(args.out, split)
        if not s['generated']:
            print(f'{where}: up to date ({s["num_images"]} images of {s["image_size"]} px, seed {s["seed"]})')
            continue
        print(f'{where}: {s["num_images"]} images of {s["image_size"]} px, seed {s["seed"]}, '
              f'{s["num_instances"]} instances '
              f'({s["num_instances"] / s["num_images"]:.2f} per image)')
        for k, name in enumerate(shapes_classes(args.shape_only), 1):
            print(f'  {k} {name:<24} {s["instances_per_class"][name]}')
    print(f'annotations: {osp.join(args.out, "annotations")}/instances_{{{",".join(args.splits)}}}.json')
    if args.preview:
        save_preview(args.preview, args.out, args.splits[0], args.preview_count)
        print(f'preview: {args.preview}')


if __name__ == '__main__':
    run_cli(main, parse_args())
