"""matplotlib plumbing shared by the view pictures: axes, crop windows, figure -> RGB array -> PNG."""
from typing import List

import numpy as np


def plt():
    """pyplot on the Agg backend (imported on first use: it costs about a second)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as pyplot
    return pyplot


def outlined(size: float, width: float = 2.5, colour: str = 'white') -> dict:
    """Text keywords for a label with an outline that keeps it readable on any background."""
    from matplotlib import patheffects
    return dict(fontsize=size, path_effects=[patheffects.withStroke(linewidth=width, foreground=colour)])


def image_axis(ax, img: np.ndarray, title: str, fontsize: float = 10) -> None:
    ax.imshow(img, interpolation='nearest')
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw_crop_boxes(ax, views: List[dict], factor: int) -> None:
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
        ax.text(x, y, f'view {v + 1}{flip}', va=va, ha=ha, color='black', **outlined(8.5, 3))


def render(fig, dpi: int) -> np.ndarray:
    """Draw the figure at ``dpi`` and close it; returns (H, W, 3) uint8 RGB."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt().close(fig)
    return rgb


def save_png(rgb: np.ndarray, path: str) -> None:
    """Write an RGB picture as an optimised palette PNG (a few hundred KB at most)."""
    from PIL import Image
    img = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
