"""Browse what a self-supervised model sees: one PNG per training sample.

    python tools/analysis/browse_views.py CONFIG --out DIR [-n 8] [--start 0] [--seed 0]
        [--cfg-options KEY=VALUE ...]

The train pipeline of CONFIG runs step by step on samples ``start .. start + n - 1``, stopping
before ``PackInputs``. Each sample is seeded with ``seed + index``, so it looks the same whatever
``--start`` and ``-n`` are. The layout follows the pipeline:

* DetCon (``MultiViewWithMask``): the image with its image-level segment ids (the map right after
  the mask source), each view with its crop of the ids, and the ids as the model uses them: the
  view's map reduced to the last feature map (``--stride``, 32 = res5) by ``downsample_masks``,
  with how often ``sample_mask_ids`` draws each id (``--num-samples``, default the model's
  ``num_samples``). An id keeps one colour in every panel; ids owning cells in only one view are
  grey (they have no positive). Crop windows are drawn on the image when the crop transform
  records them (``crop_bbox``).
* DetCo (``DetCoViews``): the image, the global views and each local patch set in its shuffled
  slot order, labelled with the grid cell each patch came from, and re-assembled by cell.
* Other multi-view pipelines (mmpretrain ``MultiView``): the image and its views.

The drawing lives in :mod:`mmdetcon.visualization`; ``ViewVisualizationHook`` draws the same pictures
from training batches.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils.cli import DictAction, UserError, load_config, run_cli  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Save one PNG per training sample showing the views '
                                     '(and for DetCon the segment ids) the model sees')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--out', required=True, help='output directory for the PNGs')
    parser.add_argument('-n', '--num', type=int, default=8, help='number of samples (default 8)')
    parser.add_argument('--start', type=int, default=0, help='index of the first sample (default 0)')
    parser.add_argument('--seed', type=int, default=0,
                        help='sample i is drawn with seed + i (augmentations and id draws)')
    parser.add_argument('--stride', type=int, default=32,
                        help="DetCon: stride of the model's last feature map (32 = ResNet res5)")
    parser.add_argument('--num-samples', type=int, default=None,
                        help='DetCon: ids drawn per view (default: model.num_samples or 16)')
    parser.add_argument('--dpi', type=int, default=100, help='resolution of the PNGs (default 100)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. train_dataloader.dataset.num_images=16')
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    if args.num < 1:
        raise UserError(f'-n must be at least 1, got {args.num}')
    if args.start < 0:
        raise UserError(f'--start must be >= 0, got {args.start}')
    if args.stride < 1 or args.dpi < 10:
        raise UserError(f'--stride must be >= 1 and --dpi >= 10, got {args.stride} and {args.dpi}')
    cfg = load_config(args.config, args.cfg_options)
    if cfg.get('train_dataloader') is None or cfg.train_dataloader.get('dataset') is None:
        raise UserError(f'{args.config} has no train_dataloader.dataset to browse')
    num_samples = args.num_samples or cfg.get('model', {}).get('num_samples', 16)
    if num_samples < 1:
        raise UserError(f'--num-samples must be >= 1, got {num_samples}')

    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from tqdm import tqdm

    import mmdetcon  # noqa: F401  (registers the transforms and datasets)
    from mmdetcon.visualization import draw_capture, picture_title, run_pipeline, save_png
    from mmpretrain.registry import DATASETS
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    if args.start >= len(dataset):
        raise UserError(f'--start {args.start} is past the end of the dataset ({len(dataset)} samples)')
    indices = range(args.start, min(args.start + args.num, len(dataset)))
    if len(indices) < args.num:
        print(f'[browse_views] the dataset has {len(dataset)} samples: showing {len(indices)}',
              file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    name = osp.splitext(osp.basename(args.config))[0]
    for index in tqdm(indices, desc='samples', unit='img', file=sys.stderr):
        seed = args.seed + index
        cap = run_pipeline(dataset, index, seed)
        stem = osp.splitext(osp.basename(cap.img_path))[0]
        picture = draw_capture(cap, picture_title(name, cap), args.stride, num_samples, seed, args.dpi)
        save_png(picture, osp.join(args.out, f'{index:06d}_{stem}.png'))
    print(f'[browse_views] wrote {len(indices)} PNG(s) to {args.out}', file=sys.stderr)


if __name__ == '__main__':
    run_cli(main, parse_args())
