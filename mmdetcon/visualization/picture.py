"""One picture per sample, laid out after its pipeline: DetCon (views with ids), DetCo (global views and
patch sets) or plain views."""
import os.path as osp

import numpy as np

from .detcon_picture import draw_detcon
from .detco_picture import draw_detco
from .figure_utils import draw_crop_boxes, image_axis, plt, render
from .id_colours import to_rgb
from .view_capture import Capture, layout_of


def picture_title(name: str, cap: Capture) -> str:
    return f'{name}  ·  sample {cap.index} ({osp.basename(cap.img_path)})'


def draw_views(cap: Capture, title: str):
    """The figure of any other pipeline: the image (with crop windows when recorded) and its views."""
    imgs = cap.results['img']
    imgs = imgs if isinstance(imgs, list) else [imgs]
    n = 1 + len(imgs)
    fig = plt().figure(figsize=(2.9 * n, 3.6))
    gs = fig.add_gridspec(1, n, wspace=0.06, left=0.01, right=0.99, top=0.8, bottom=0.03)
    ax = fig.add_subplot(gs[0, 0])
    image_axis(ax, cap.image, f'image {cap.image.shape[0]}×{cap.image.shape[1]}', 10)
    draw_crop_boxes(ax, cap.view_outputs, 1)
    for v, img in enumerate(imgs):
        h, w = np.asarray(img).shape[:2]
        image_axis(fig.add_subplot(gs[0, v + 1]), to_rgb(img), f'view {v + 1} ({h}×{w})', 10)
    fig.suptitle(title, fontsize=12, weight='bold')
    return fig


def draw_capture(cap: Capture, title: str, stride: int = 32, num_samples: int = 16, seed: int = 0,
                 dpi: int = 100) -> np.ndarray:
    """The sample's picture as (H, W, 3) uint8 RGB. DetCon: the grid of the stride-``stride`` feature map
    and ``num_samples`` ids drawn per view with a generator seeded by ``seed``."""
    kind = layout_of(cap.results)
    if kind == 'detcon':
        fig = draw_detcon(cap, title, stride, num_samples, seed)
    elif kind == 'detco':
        fig = draw_detco(cap, title)
    else:
        fig = draw_views(cap, title)
    return render(fig, dpi)
