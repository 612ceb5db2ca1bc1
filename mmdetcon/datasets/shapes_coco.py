"""The shapes scenes as an mmdet COCO instance-segmentation dataset, generated on first use, and the COCO
metric that scores only the images a dataset uses.

Both register in mmdet's registries (configs with ``default_scope='mmdet'``). The module needs mmdet and hence
full mmcv with compiled ops, so :mod:`mmdetcon` does not import it: detection configs list
``'mmdetcon.datasets.shapes_coco'`` in ``custom_imports``.
"""
from typing import Dict, List, Optional, Sequence

from mmengine.dist import barrier, is_main_process

from .shapes import MAX_OBJECTS, MIN_OBJECTS, OBJECT_SIZE, SHAPE_CLASSES, SHAPES_CLASSES, make_shapes

try:
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmdet.registry import DATASETS, METRICS
except ImportError as e:  # mmcv-lite: mmdet.datasets imports mmcv.ops
    raise ImportError(f'mmdetcon.datasets.shapes_coco needs mmdet, which needs full mmcv with compiled ops '
                      f'(tools/install_mmcv.sh): {e}') from e


@DATASETS.register_module()
class ShapesCocoDataset(CocoDataset):
    """mmdet ``CocoDataset`` over ``{data_root}/{split}``, made with :func:`make_shapes` if absent.

    Args:
        split: Sub-folder; annotations are ``annotations/instances_{split}.json``.
        num_images: The first ``num_images`` images are used (a larger generated set is reused).
        image_size, seed, shape_only, object_size, num_objects, style: Generation parameters (``shape_only``:
            classes are the shapes alone; see :func:`mmdetcon.datasets.shapes.render_image`).
        **kwargs: ``CocoDataset`` arguments (``pipeline``, ``filter_cfg``, ``test_mode``, ...).
    """
    METAINFO = dict(
        classes=SHAPES_CLASSES,
        palette=[(220, 35, 35), (35, 175, 60), (45, 80, 230), (240, 215, 40), (215, 45, 200),
                 (40, 205, 215), (250, 140, 25), (240, 240, 240)])

    def __init__(self, data_root: str = 'data/shapes', split: str = 'train', num_images: int = 256,
                 image_size: int = 128, seed: int = 0, generate_workers: int = 0,
                 ann_file: Optional[str] = None, data_prefix: Optional[dict] = None, shape_only: bool = False,
                 object_size: Sequence[float] = OBJECT_SIZE,
                 num_objects: Sequence[int] = (MIN_OBJECTS, MAX_OBJECTS), style: str = 'textured',
                 **kwargs) -> None:
        self.split, self.num_images, self.image_size, self.seed = split, int(num_images), image_size, seed
        self.generate_workers, self.shape_only = generate_workers, shape_only
        self.object_size, self.num_objects, self.style = object_size, num_objects, style
        if shape_only:
            kwargs['metainfo'] = dict(kwargs.get('metainfo') or {}, classes=SHAPE_CLASSES)
        super().__init__(data_root=data_root,
                         ann_file=ann_file or f'annotations/instances_{split}.json',
                         data_prefix=data_prefix or dict(img=f'{split}/images/'), **kwargs)

    def load_data_list(self) -> List[dict]:
        if is_main_process():
            make_shapes(self.data_root, self.num_images, self.image_size, self.seed, self.split,
                        num_workers=self.generate_workers, shape_only=self.shape_only,
                        object_size=self.object_size, num_objects=self.num_objects, style=self.style)
        barrier()
        # make_shapes numbers images 0..N-1, so the first num_images are those with smaller ids.
        return [info for info in super().load_data_list() if info['img_id'] < self.num_images]


@METRICS.register_module()
class SubsetCocoMetric(CocoMetric):
    """``CocoMetric`` over the evaluated images only.

    ``CocoMetric`` with an ``ann_file`` scores every image of that file, so the images that
    :class:`ShapesCocoDataset` leaves out of a larger generated set would count as missed detections.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        self.img_ids = sorted({gt['img_id'] for gt, _ in results})
        return super().compute_metrics(results)
