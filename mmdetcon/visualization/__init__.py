"""Pictures of what a self-supervised model sees: views, segment ids, DetCon's sampled grid, DetCo's patches."""
from .detcon_picture import GridIds, grid_ids
from .figure_utils import save_png
from .id_colours import colourise, id_colour, overlay_ids, to_rgb
from .picture import draw_capture, picture_title
from .view_capture import (Capture, RecordViews, capture_from_batch, layout_of, record_views,
                           run_pipeline)

__all__ = ['Capture', 'GridIds', 'RecordViews', 'capture_from_batch', 'colourise', 'draw_capture', 'grid_ids',
           'id_colour', 'layout_of', 'overlay_ids', 'picture_title', 'record_views', 'run_pipeline',
           'save_png', 'to_rgb']
