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
"""
import argparse
import colorsys
import copy
import os
import os.path as osp
import random
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils.cli import DictAction, UserError, load_config, run_cli  # noqa: E402

GREY = (0.72, 0.72, 0.72)
_COLOUR_SALT = 0x5EED


# ---------------------------------------------------------------------------------------------
# Colours per segment id
# ---------------------------------------------------------------------------------------------
def id_colour(seg_id: int) -> Tuple[float, float, float]:
    """A fixed, fairly saturated RGB colour in [0, 1] for a segment id.

    Hues step by the golden ratio, so close ids (FH numbers neighbouring segments close together)
    get distant hues; saturation and value are pseudo-random per id.
    """
    rng = np.random.default_rng([_COLOUR_SALT, int(seg_id)])
    hue = (0.12 + int(seg_id) * 0.6180339887498949) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.55 + 0.4 * rng.random(), 0.75 + 0.25 * rng.random())


def colourise(ids: np.ndarray) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) float32 colours (``id_colour`` of each pixel's id)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    lut = np.array([id_colour(i) for i in uniq], dtype=np.float32).reshape(-1, 3)
    return lut[inverse.reshape(ids.shape)]


def boundaries(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another id."""
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def to_rgb(img: np.ndarray) -> np.ndarray:
    """mmcv image (BGR, uint8 or float in [0, 255], maybe single-channel) -> (H, W, 3) uint8 RGB."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., 2::-1]
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _upscale(arr: np.ndarray, factor: int) -> np.ndarray:
    return arr.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else arr


def display_factor(shape: Sequence[int], target: int = 384) -> int:
    """Integer factor that brings the long side near ``target`` px (thin boundaries when drawn)."""
    return max(1, int(round(target / max(shape[:2]))))


def overlay_ids(img_rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend id colours over the image, upscaled by ``display_factor`` with nearest neighbours, and
    draw the segment boundaries (white) one display pixel wide. Returns uint8 RGB."""
    if img_rgb.shape[:2] != ids.shape:
        raise ValueError(f'image {img_rgb.shape[:2]} and id map {ids.shape} differ in size')
    k = display_factor(ids.shape)
    img = _upscale(img_rgb, k).astype(np.float32) / 255
    big = _upscale(ids, k)
    out = (1 - alpha) * img + alpha * colourise(big)
    out[boundaries(big)] = 1.0
    return (out * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Running the pipeline with intermediate results
# ---------------------------------------------------------------------------------------------
@dataclass
class Capture:
    """What one sample looks like along the pipeline."""
    index: int
    img_path: str
    image: np.ndarray                      # decoded image, RGB uint8
    results: dict                          # results just before PackInputs
    ids: Optional[np.ndarray] = None       # image-level id map, right after the mask source
    mask_source: str = ''
    view_outputs: List[dict] = field(default_factory=list)  # each view pipeline's own output
    num_global_views: Optional[int] = None  # DetCoViews' setting, when the pipeline has one


class _Recorder:
    """Stands in for one view pipeline of a multi-view wrapper and keeps its output dict."""

    def __init__(self, pipeline: Callable[[dict], dict], sink: List[dict]) -> None:
        self.pipeline, self.sink = pipeline, sink

    def __call__(self, results: dict) -> dict:
        out = self.pipeline(results)
        self.sink.append(out)
        return out


def _leaf_dataset(dataset: Any, index: int) -> Tuple[Any, int]:
    """Unwrap dataset wrappers (repeat / concat / class balanced) to the dataset that owns the pipeline."""
    while not hasattr(dataset, 'pipeline'):
        if not hasattr(dataset, '_get_ori_dataset_idx'):
            raise UserError(f'{type(dataset).__name__} has no pipeline to browse')
        mapped = dataset._get_ori_dataset_idx(index)
        if isinstance(mapped, tuple):
            dataset, index = dataset.datasets[mapped[0]], mapped[1]
        else:
            dataset, index = dataset.dataset, mapped
    return dataset, index


def run_pipeline(dataset: Any, index: int, seed: int) -> Capture:
    """Run the pipeline of sample ``index`` transform by transform (seeded with ``seed``)."""
    from mmpretrain.datasets.transforms import PackInputs
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    leaf, leaf_index = _leaf_dataset(dataset, index)
    results = copy.deepcopy(leaf.get_data_info(leaf_index))
    img_path = str(results.get('img_path', f'sample {index}'))
    image, ids, source, views, num_global = None, None, '', [], None
    for t in leaf.pipeline.transforms:
        if isinstance(t, PackInputs):
            break
        num_global = getattr(t, 'num_global_views', num_global)
        wrapped = isinstance(getattr(t, 'transforms', None), list) and hasattr(t, 'num_views')
        original = t.transforms if wrapped else None
        if wrapped:  # a MultiView-like wrapper: record each view pipeline's output
            t.transforms = [_Recorder(p, views) for p in original]
        try:
            results = t(results)
        except Exception as exc:
            raise RuntimeError(f'{type(t).__name__} failed on {img_path}: {exc}') from exc
        finally:
            if wrapped:
                t.transforms = original
        if results is None:
            raise RuntimeError(f'{type(t).__name__} dropped sample {index} ({img_path})')
        if image is None and isinstance(results.get('img'), np.ndarray):
            image = to_rgb(results['img'])
        seg = results.get('gt_seg_map')
        if ids is None and isinstance(seg, np.ndarray) and seg.ndim == 2:
            ids, source = seg.copy(), type(t).__name__
            if isinstance(results.get('img'), np.ndarray):  # the image the ids belong to
                image = to_rgb(results['img'])
    if image is None:
        raise RuntimeError(f'the pipeline never produced a single decoded image for {img_path}')
    return Capture(index, img_path, image, results, ids, source, views, num_global)


def layout_of(results: dict) -> str:
    """'detcon', 'detco', 'views' or 'single', from the results before PackInputs."""
    imgs = results.get('img')
    if isinstance(imgs, list) and results.get('mask') is not None:
        return 'detcon'
    if isinstance(imgs, list) and 'patch_cells' in results:
        return 'detco'
    return 'views' if isinstance(imgs, list) else 'single'


# ---------------------------------------------------------------------------------------------
# DetCon: ids on the feature grid
# ---------------------------------------------------------------------------------------------
@dataclass
class GridIds:
    cells: np.ndarray     # (gh, gw) winning id per cell
    drawn: np.ndarray     # (R,) sampled ids


def grid_ids(masks: np.ndarray, stride: int, num_samples: int, seed: int) -> List[GridIds]:
    """Per view: the (V, H, W) id maps reduced to the stride-``stride`` grid and ``num_samples`` ids
    drawn among each view's cells, as the DetCon model does (one draw per view)."""
    import torch

    from mmdetcon.models.utils import downsample_masks, sample_mask_ids
    _, H, W = masks.shape
    if H % stride or W % stride:
        raise UserError(f'views of {H}x{W} px do not divide into stride-{stride} cells; '
                        'the model would reject them too (see --stride)')
    gh, gw = H // stride, W // stride
    gen = torch.Generator().manual_seed(seed)
    out = []
    for m in masks:
        cells = downsample_masks(torch.from_numpy(np.ascontiguousarray(m)).long()[None], (gh, gw))
        drawn = sample_mask_ids(cells, num_samples, generator=gen)
        out.append(GridIds(cells.view(gh, gw).numpy(), drawn[0].numpy()))
    return out


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _outlined(size: float, width: float = 2.5, colour: str = 'white') -> dict:
    from matplotlib import patheffects
    return dict(fontsize=size, path_effects=[patheffects.withStroke(linewidth=width, foreground=colour)])


def _image_axis(ax, img: np.ndarray, title: str, fontsize: float = 10) -> None:
    ax.imshow(img, interpolation='nearest')
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_crop_boxes(ax, views: List[dict], factor: int) -> None:
    """View windows (``crop_bbox`` in image pixels) on an image shown at ``factor`` x."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle
    styles = ['-', '--', ':', '-.']
    for v, out in enumerate(views):
        box = out.get('crop_bbox')
        if box is None:
            continue
        x0, y0, x1, y1 = (float(c) * factor - 0.5 for c in box)
        rect = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2.2, ls=styles[v % 4], ec='white')
        rect.set_path_effects([patheffects.withStroke(linewidth=4, foreground='black')])
        ax.add_patch(rect)
        flip = ' (flipped)' if out.get('flip') else ''
        # Alternate corners (top-left, bottom-right) so that labels of similar windows do not collide.
        x, y, ha, va = (x0 + 4, y0 + 4, 'left', 'top') if v % 2 == 0 else (x1 - 4, y1 - 4, 'right', 'bottom')
        ax.text(x, y, f'view {v + 1}{flip}', va=va, ha=ha, color='black', **_outlined(8.5, 3))


def _draw_grid(ax, view_rgb: np.ndarray, grid: GridIds, other: GridIds, num_samples: int) -> None:
    """Cells coloured by their winning id (grey: not on the other view's grid), region borders,
    each id's label and the number of times it was drawn."""
    from matplotlib.patches import Rectangle
    H, W = view_rgb.shape[:2]
    gh, gw = grid.cells.shape
    sy, sx = H / gh, W / gw
    shared = set(np.unique(other.cells).tolist())
    faded = 0.55 + 0.45 * view_rgb.astype(np.float32) / 255
    ax.imshow(faded, extent=(0, W, H, 0), interpolation='bilinear')
    fill = np.array([[(*id_colour(i), 0.7) if i in shared else (*GREY, 0.6) for i in row]
                     for row in grid.cells.tolist()])
    ax.imshow(fill, extent=(0, W, H, 0), interpolation='nearest')
    for r in range(gh):
        for c in range(gw):
            if grid.cells[r, c] not in shared:
                ax.add_patch(Rectangle((c * sx, r * sy), sx, sy, fill=False, hatch='///', ec='0.45',
                                       lw=0))
    # Thin cell lines, then thick lines where neighbouring cells belong to different ids.
    for r in range(1, gh):
        ax.plot([0, W], [r * sy] * 2, color='white', lw=0.8)
    for c in range(1, gw):
        ax.plot([c * sx] * 2, [0, H], color='white', lw=0.8)
    for r in range(gh):
        for c in range(gw):
            if c + 1 < gw and grid.cells[r, c] != grid.cells[r, c + 1]:
                ax.plot([(c + 1) * sx] * 2, [r * sy, (r + 1) * sy], color='0.1', lw=2.2)
            if r + 1 < gh and grid.cells[r, c] != grid.cells[r + 1, c]:
                ax.plot([c * sx, (c + 1) * sx], [(r + 1) * sy] * 2, color='0.1', lw=2.2)
    counts = dict(zip(*np.unique(grid.drawn, return_counts=True)))
    fontsize = max(5.0, min(10.0, 27.0 / max(gh, gw)))
    for seg in np.unique(grid.cells):
        rr, cc = np.nonzero(grid.cells == seg)
        k = int(np.argmin((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2))  # cell nearest the centroid
        n = int(counts.get(seg, 0))
        label = f'{seg}\n×{n}' if n else f'{seg}\n–'
        ax.text((cc[k] + 0.5) * sx, (rr[k] + 0.5) * sy, label, ha='center', va='center',
                color='black' if seg in shared else '0.35', weight='bold' if n else 'normal',
                linespacing=0.95, **_outlined(fontsize))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    with_pos = int(np.isin(grid.drawn, other.drawn).sum())
    ax.set_xlabel(f'{num_samples} draws: {len(counts)} ids; {with_pos}/{num_samples} have a positive',
                  fontsize=8.5)


def draw_detcon(cap: Capture, path: str, title: str, stride: int, num_samples: int, seed: int,
                dpi: int) -> None:
    plt = _plt()
    masks = np.asarray(cap.results['mask'])
    views = [to_rgb(v) for v in cap.results['img']]
    grids = grid_ids(masks, stride, num_samples, seed)
    V = len(views)
    height = 2.75 * V + 1.3
    fig = plt.figure(figsize=(2.75 * (2 + 3), height))
    gs = fig.add_gridspec(V, 4, width_ratios=[2, 1, 1, 1], wspace=0.06, hspace=0.3,
                          left=0.01, right=0.99, top=1 - 0.7 / height, bottom=0.65 / height)
    ax = fig.add_subplot(gs[:, 0])
    if cap.ids is not None:
        shown = overlay_ids(cap.image, cap.ids)
        n_ids = len(np.unique(cap.ids))
        head = f'image {cap.image.shape[0]}×{cap.image.shape[1]}: {n_ids} ids ({cap.mask_source})'
    else:
        shown, head = cap.image, f'image {cap.image.shape[0]}×{cap.image.shape[1]}'
    _image_axis(ax, shown, head, 11)
    _draw_crop_boxes(ax, cap.view_outputs[:V], display_factor(cap.image.shape))
    pixel_sets = [set(np.unique(m).tolist()) for m in masks]
    for v in range(V):
        others = [s for j, s in enumerate(pixel_sets) if j != v]
        shared_px = len(pixel_sets[v].intersection(*others)) if others else 0
        other_grid = grids[1 - v] if V == 2 else grids[(v + 1) % V]
        cells = set(np.unique(grids[v].cells).tolist())
        shared_cells = len(cells & set(np.unique(other_grid.cells).tolist()))
        h, w = views[v].shape[:2]
        out = cap.view_outputs[v] if v < len(cap.view_outputs) else {}
        _image_axis(fig.add_subplot(gs[v, 1]), views[v],
                    f'view {v + 1} ({h}×{w}{", flipped" if out.get("flip") else ""})', 10)
        _image_axis(fig.add_subplot(gs[v, 2]), overlay_ids(views[v], masks[v]),
                    f'view {v + 1}: {len(pixel_sets[v])} ids, {shared_px} shared', 10)
        ax = fig.add_subplot(gs[v, 3])
        _draw_grid(ax, views[v], grids[v], other_grid, num_samples)
        gh, gw = grids[v].cells.shape
        ax.set_title(f'view {v + 1}, {gh}×{gw} cells: {len(cells)} ids, {shared_cells} shared',
                     fontsize=10)
    fig.suptitle(title, fontsize=12, weight='bold')
    fig.text(0.5, 0.012, 'One colour per segment id in every panel. Right: the feature grid at stride '
             f'{stride}; each cell takes the id covering most of its pixels (downsample_masks); label = '
             f'id, ×k = times drawn by sample_mask_ids ({num_samples} per view); grey hatched = id not '
             'on the other view\'s grid (no positive).', ha='center', va='bottom', fontsize=8.5,
             color='0.25', wrap=True)
    _save(fig, path, dpi)


def _tile_canvas(patches: List[np.ndarray], cells: Optional[np.ndarray], grid: int, by_cell: bool,
                 gap: int = 3) -> Tuple[np.ndarray, List[Tuple[int, int, int]]]:
    """Patches on a ``grid x grid`` canvas (white gaps, a frame coloured by source cell); returns the
    canvas and (slot, x, y) of each tile's top-left corner."""
    p = patches[0].shape[0]
    frame = 2
    tile = p + 2 * frame
    size = grid * tile + (grid + 1) * gap
    canvas = np.full((size, size, 3), 255, np.uint8)
    corners = []
    for slot, patch in enumerate(patches):
        pos = int(cells[slot]) if (by_cell and cells is not None) else slot
        r, c = divmod(pos, grid)
        y, x = gap + r * (tile + gap), gap + c * (tile + gap)
        colour = (np.array(id_colour(int(cells[slot]))) * 255 if cells is not None
                  else np.array([90, 90, 90]))
        canvas[y:y + tile, x:x + tile] = colour.astype(np.uint8)
        canvas[y + frame:y + frame + p, x + frame:x + frame + p] = to_rgb(patch)
        corners.append((slot, x, y))
    return canvas, corners


def draw_detco(cap: Capture, path: str, title: str, dpi: int) -> None:
    plt = _plt()
    imgs = cap.results['img']
    cell_sets = cap.results['patch_cells']
    if all(c is not None for c in cell_sets):  # DetCoLocalPatches records each slot's cell
        sizes = [len(c) for c in cell_sets]
        num_global = len(imgs) - sum(sizes)
    else:  # no recorded cells: the local sets share the patches after the global views evenly
        num_global = 2 if cap.num_global_views is None else cap.num_global_views
        sizes = [(len(imgs) - num_global) // len(cell_sets)] * len(cell_sets)
    globals_, patch_sets, start = imgs[:num_global], [], num_global
    for s in sizes:
        patch_sets.append(imgs[start:start + s])
        start += s
    recorded = all(c is not None for c in cell_sets)
    per_set = 2 if recorded else 1  # slot order, and re-assembled by cell when cells are recorded
    top, cols = 1 + num_global, per_set * len(patch_sets)
    unit = int(np.lcm(top, cols))
    fig = plt.figure(figsize=(11.5, 8.2))
    gs = fig.add_gridspec(2, unit, height_ratios=[cols / top * 1.0, 1.0], wspace=0.15, hspace=0.22,
                          left=0.01, right=0.99, top=0.91, bottom=0.07)
    span = unit // top
    _image_axis(fig.add_subplot(gs[0, :span]), cap.image,
                f'image {cap.image.shape[0]}×{cap.image.shape[1]}', 10)
    for g, img in enumerate(globals_):
        h, w = img.shape[:2]
        _image_axis(fig.add_subplot(gs[0, (g + 1) * span:(g + 2) * span]), to_rgb(img),
                    f'global view {g + 1} ({h}×{w})', 10)
    span = unit // cols
    grid = 0
    for k, patches in enumerate(patch_sets):
        cells = None if cell_sets[k] is None else np.asarray(cell_sets[k])
        grid = int(round(np.sqrt(len(patches))))
        if grid * grid != len(patches):
            raise RuntimeError(f'local set {k + 1} has {len(patches)} patches, not a square grid')
        fontsize = max(5.0, min(8.0, 22.0 / grid))
        for j, by_cell in enumerate([False, True] if cells is not None else [False]):
            canvas, corners = _tile_canvas(patches, cells, grid, by_cell)
            ax = fig.add_subplot(gs[1, (per_set * k + j) * span:(per_set * k + j + 1) * span])
            what = 're-assembled by cell' if by_cell else 'as fed (slot order)'
            _image_axis(ax, canvas, f'local set {k + 1}: {what}', 10)
            for slot, x, y in corners:
                if cells is not None and not by_cell:
                    r, c = divmod(int(cells[slot]), grid)
                    label = f'{slot}: cell ({r},{c})'
                else:
                    label = f'slot {slot}'
                ax.text(x + 3, y + 3, label, ha='left', va='top', color='black', **_outlined(fontsize, 2))
    fig.suptitle(title, fontsize=12, weight='bold')
    note = (f'Bottom: each local set is one crop, augmented once and cut into a {grid}×{grid} grid; the '
            'model gets one random patch per cell, in a shuffled slot order. Frame colour = source cell.'
            if recorded else 'The transform records no source cells: patches are shown in slot order only.')
    fig.text(0.5, 0.015, note, ha='center', va='bottom', fontsize=8.5, color='0.25', wrap=True)
    _save(fig, path, dpi)


def draw_views(cap: Capture, path: str, title: str, dpi: int) -> None:
    plt = _plt()
    imgs = cap.results['img']
    imgs = imgs if isinstance(imgs, list) else [imgs]
    n = 1 + len(imgs)
    fig = plt.figure(figsize=(2.9 * n, 3.6))
    gs = fig.add_gridspec(1, n, wspace=0.06, left=0.01, right=0.99, top=0.8, bottom=0.03)
    ax = fig.add_subplot(gs[0, 0])
    _image_axis(ax, cap.image, f'image {cap.image.shape[0]}×{cap.image.shape[1]}', 10)
    _draw_crop_boxes(ax, cap.view_outputs, 1)
    for v, img in enumerate(imgs):
        h, w = np.asarray(img).shape[:2]
        _image_axis(fig.add_subplot(gs[0, v + 1]), to_rgb(img), f'view {v + 1} ({h}×{w})', 10)
    fig.suptitle(title, fontsize=12, weight='bold')
    _save(fig, path, dpi)


def _save(fig, path: str, dpi: int) -> None:
    """Write the figure as an optimised palette PNG (a few hundred KB at most)."""
    from PIL import Image
    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    _plt().close(fig)
    img = Image.fromarray(rgba[..., :3].copy())
    img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, optimize=True)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
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
        kind = layout_of(cap.results)
        stem = osp.splitext(osp.basename(cap.img_path))[0]
        path = osp.join(args.out, f'{index:06d}_{stem}.png')
        title = f'{name}  ·  sample {index} ({osp.basename(cap.img_path)})'
        if kind == 'detcon':
            draw_detcon(cap, path, title, args.stride, num_samples, seed, args.dpi)
        elif kind == 'detco':
            draw_detco(cap, path, title, args.dpi)
        else:
            draw_views(cap, path, title, args.dpi)
    print(f'[browse_views] wrote {len(indices)} PNG(s) to {args.out}', file=sys.stderr)


if __name__ == '__main__':
    run_cli(main, parse_args())
