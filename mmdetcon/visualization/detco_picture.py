"""DetCo's picture: the global views, and each local patch set in its shuffled slot order and re-assembled
by the grid cell each patch came from."""
from typing import List, Optional, Tuple

import numpy as np

from .figure_utils import image_axis, outlined, plt
from .id_colours import id_colour, to_rgb
from .view_capture import Capture


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


def draw_detco(cap: Capture, title: str):
    """The figure. Without recorded cells (``patch_cells`` entries None) the local sets share the patches
    after ``num_global_views`` global views evenly and are shown in slot order only."""
    imgs = cap.results['img']
    cell_sets = cap.results['patch_cells']
    recorded = all(c is not None for c in cell_sets)
    if recorded:  # DetCoLocalPatches records each slot's cell
        sizes = [len(c) for c in cell_sets]
        num_global = len(imgs) - sum(sizes)
    else:
        num_global = 2 if cap.num_global_views is None else cap.num_global_views
        sizes = [(len(imgs) - num_global) // len(cell_sets)] * len(cell_sets)
    globals_, patch_sets, start = imgs[:num_global], [], num_global
    for s in sizes:
        patch_sets.append(imgs[start:start + s])
        start += s
    per_set = 2 if recorded else 1  # slot order, and re-assembled by cell when cells are recorded
    top, cols = 1 + num_global, per_set * len(patch_sets)
    unit = int(np.lcm(top, cols))
    fig = plt().figure(figsize=(11.5, 8.2))
    gs = fig.add_gridspec(2, unit, height_ratios=[cols / top * 1.0, 1.0], wspace=0.15, hspace=0.22,
                          left=0.01, right=0.99, top=0.91, bottom=0.07)
    span = unit // top
    image_axis(fig.add_subplot(gs[0, :span]), cap.image, f'image {cap.image.shape[0]}×{cap.image.shape[1]}', 10)
    for g, img in enumerate(globals_):
        h, w = img.shape[:2]
        image_axis(fig.add_subplot(gs[0, (g + 1) * span:(g + 2) * span]), to_rgb(img),
                   f'global view {g + 1} ({h}×{w})', 10)
    span = unit // cols
    grid = 0
    for k, patches in enumerate(patch_sets):
        cells = None if cell_sets[k] is None else np.asarray(cell_sets[k])
        grid = int(round(np.sqrt(len(patches))))
        if grid * grid != len(patches):
            raise ValueError(f'local set {k + 1} has {len(patches)} patches, not a square grid')
        fontsize = max(5.0, min(8.0, 22.0 / grid))
        for j, by_cell in enumerate([False, True] if cells is not None else [False]):
            canvas, corners = _tile_canvas(patches, cells, grid, by_cell)
            ax = fig.add_subplot(gs[1, (per_set * k + j) * span:(per_set * k + j + 1) * span])
            what = 're-assembled by cell' if by_cell else 'as fed (slot order)'
            image_axis(ax, canvas, f'local set {k + 1}: {what}', 10)
            for slot, x, y in corners:
                if cells is not None and not by_cell:
                    r, c = divmod(int(cells[slot]), grid)
                    label = f'{slot}: cell ({r},{c})'
                else:
                    label = f'slot {slot}'
                ax.text(x + 3, y + 3, label, ha='left', va='top', color='black', **outlined(fontsize, 2))
    fig.suptitle(title, fontsize=12, weight='bold')
    note = (f'Bottom: each local set is one crop, augmented once and cut into a {grid}×{grid} grid; the '
            'model gets one random patch per cell, in a shuffled slot order. Frame colour = source cell.'
            if recorded else 'The transform records no source cells: patches are shown in slot order only.')
    fig.text(0.5, 0.015, note, ha='center', va='bottom', fontsize=8.5, color='0.25', wrap=True)
    return fig
