"""DetCon's picture: segment ids on the image and on each view, and the ids on the last feature grid with
how often the loss's sampler draws each of them."""
from dataclasses import dataclass
from typing import List

import numpy as np

from .figure_utils import draw_crop_boxes, image_axis, outlined, plt
from .id_colours import GREY, display_factor, id_colour, overlay_ids, to_rgb
from .view_capture import Capture


@dataclass
class GridIds:
    cells: np.ndarray     # (gh, gw) winning id per cell
    drawn: np.ndarray     # (R,) sampled ids


def grid_ids(masks: np.ndarray, stride: int, num_samples: int, seed: int) -> List[GridIds]:
    """Per view: the (V, H, W) id maps reduced to the stride-``stride`` grid and ``num_samples`` ids
    drawn among each view's cells, as the DetCon model does (one draw per view, from a generator
    seeded with ``seed``)."""
    import torch

    from mmdetcon.models.utils import downsample_masks, sample_mask_ids
    _, H, W = masks.shape
    if H % stride or W % stride:
        raise ValueError(f'views of {H}x{W} px do not divide into stride-{stride} cells; '
                         'the model would reject them too')
    gh, gw = H // stride, W // stride
    gen = torch.Generator().manual_seed(seed)
    out = []
    for m in masks:
        cells = downsample_masks(torch.from_numpy(np.ascontiguousarray(m)).long()[None], (gh, gw))
        drawn = sample_mask_ids(cells, num_samples, generator=gen)
        out.append(GridIds(cells.view(gh, gw).numpy(), drawn[0].numpy()))
    return out


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
                linespacing=0.95, **outlined(fontsize))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    with_pos = int(np.isin(grid.drawn, other.drawn).sum())
    ax.set_xlabel(f'{num_samples} draws: {len(counts)} ids; {with_pos}/{num_samples} have a positive',
                  fontsize=8.5)


def draw_detcon(cap: Capture, title: str, stride: int, num_samples: int, seed: int):
    """The figure: image with its ids and crop windows; per view the view, its ids and the grid."""
    masks = np.asarray(cap.results['mask'])
    views = [to_rgb(v) for v in cap.results['img']]
    grids = grid_ids(masks, stride, num_samples, seed)
    V = len(views)
    height = 2.75 * V + 1.3
    fig = plt().figure(figsize=(2.75 * (2 + 3), height))
    gs = fig.add_gridspec(V, 4, width_ratios=[2, 1, 1, 1], wspace=0.06, hspace=0.3,
                          left=0.01, right=0.99, top=1 - 0.7 / height, bottom=0.65 / height)
    ax = fig.add_subplot(gs[:, 0])
    if cap.ids is not None:
        shown = overlay_ids(cap.image, cap.ids)
        n_ids = len(np.unique(cap.ids))
        head = f'image {cap.image.shape[0]}×{cap.image.shape[1]}: {n_ids} ids ({cap.mask_source})'
    else:
        shown, head = cap.image, f'image {cap.image.shape[0]}×{cap.image.shape[1]}'
    image_axis(ax, shown, head, 11)
    draw_crop_boxes(ax, cap.view_outputs[:V], display_factor(cap.image.shape))
    pixel_sets = [set(np.unique(m).tolist()) for m in masks]
    for v in range(V):
        others = [s for j, s in enumerate(pixel_sets) if j != v]
        shared_px = len(pixel_sets[v].intersection(*others)) if others else 0
        other_grid = grids[1 - v] if V == 2 else grids[(v + 1) % V]
        cells = set(np.unique(grids[v].cells).tolist())
        shared_cells = len(cells & set(np.unique(other_grid.cells).tolist()))
        h, w = views[v].shape[:2]
        out = cap.view_outputs[v] if v < len(cap.view_outputs) else {}
        image_axis(fig.add_subplot(gs[v, 1]), views[v],
                   f'view {v + 1} ({h}×{w}{", flipped" if out.get("flip") else ""})', 10)
        image_axis(fig.add_subplot(gs[v, 2]), overlay_ids(views[v], masks[v]),
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
    return fig
