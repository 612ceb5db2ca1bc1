"""What one training sample looks like along its pipeline: the decoded image, its image-level segment ids,
the views (and DetCon's per-view ids, DetCo's patch cells) the model is fed, and each view's crop window.

A :class:`Capture` comes either from running a dataset's pipeline step by step (:func:`run_pipeline`,
used by ``tools/analysis/browse_views.py``) or from one sample of a collated training batch
(:func:`capture_from_batch`, used by :class:`~mmdetcon.engine.hooks.ViewVisualizationHook`). The batch
keeps only what ``PackInputs`` packs, so the batch path replays the deterministic part of the pipeline
(loading and the mask source, everything before the multi-view transform) for the image and its ids,
and reads crop windows and patch cells from the data sample when :func:`record_views` put them there.
"""
import copy
import random
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from .id_colours import to_rgb

VIEW_META_KEYS = ('crop_bbox', 'flip', 'flip_direction')  # what a picture shows of each view pipeline's own output
RECORDED_KEYS = ('view_meta', 'patch_cells')  # metainfo :func:`record_views` asks PackInputs to keep


@dataclass
class Capture:
    """What one sample looks like along the pipeline."""
    index: int
    img_path: str
    image: np.ndarray                      # decoded image, RGB uint8
    results: dict                          # 'img' (views as fed), 'mask', 'patch_cells' when present
    ids: Optional[np.ndarray] = None       # image-level id map, right after the mask source
    mask_source: str = ''
    view_outputs: List[dict] = field(default_factory=list)  # VIEW_META_KEYS of each view, when known
    num_global_views: Optional[int] = None  # DetCoViews' setting, when the pipeline has one


def is_view_transform(t: Any) -> bool:
    """A transform that turns one image into several views (MultiView, MultiViewWithMask, DetCoViews)."""
    return isinstance(t, RecordViews) or hasattr(t, 'num_views') or hasattr(t, 'num_global_views')


def _has_view_pipelines(t: Any) -> bool:
    return isinstance(getattr(t, 'transforms', None), list) and hasattr(t, 'num_views')


class _ViewSink:
    """Stands in for one view pipeline of a multi-view wrapper and keeps what a picture needs of its output."""

    def __init__(self, pipeline: Callable[[dict], dict], sink: List[dict]) -> None:
        self.pipeline, self.sink = pipeline, sink

    def __call__(self, results: dict) -> dict:
        out = self.pipeline(results)
        if out is not None:
            self.sink.append({k: copy.deepcopy(out[k]) for k in VIEW_META_KEYS if k in out})
        return out


class RecordViews:
    """Runs a multi-view transform and stores each view's crop window and flip in ``results['view_meta']``.

    The view pipelines of an mmpretrain-style wrapper (``transforms`` list, ``num_views``) are swapped for
    recorders only during the call, so the wrapped transform is left as it was. Randomness is untouched.
    """

    def __init__(self, transform: Callable[[dict], dict]) -> None:
        self.transform = transform

    def __getattr__(self, name: str) -> Any:  # num_views, num_global_views, ... of the wrapped transform
        if name == 'transform':
            raise AttributeError(name)
        return getattr(self.transform, name)

    def __call__(self, results: dict) -> Optional[dict]:
        t, sink = self.transform, []
        original = t.transforms if _has_view_pipelines(t) else None
        if original is not None:
            t.transforms = [_ViewSink(p, sink) for p in original]
        try:
            out = t(results)
        finally:
            if original is not None:
                t.transforms = original
        if out is not None and sink:
            out['view_meta'] = sink
        return out

    def __repr__(self) -> str:
        return f'RecordViews({self.transform!r})'


def leaf_datasets(dataset: Any) -> List[Any]:
    """The datasets that own a pipeline, under repeat / concat / class-balanced wrappers."""
    if hasattr(dataset, 'pipeline'):
        return [dataset]
    children = getattr(dataset, 'datasets', None) or [getattr(dataset, 'dataset', None)]
    leaves = [leaf for child in children if child is not None for leaf in leaf_datasets(child)]
    if not leaves:
        raise ValueError(f'{type(dataset).__name__} has no pipeline to draw')
    return leaves


def leaf_dataset(dataset: Any, index: int) -> Tuple[Any, int]:
    """The dataset that owns the pipeline of sample ``index`` of ``dataset``, and the index there."""
    while not hasattr(dataset, 'pipeline'):
        if not hasattr(dataset, '_get_ori_dataset_idx'):
            raise ValueError(f'{type(dataset).__name__} has no pipeline to draw')
        mapped = dataset._get_ori_dataset_idx(index)
        if isinstance(mapped, tuple):
            dataset, index = dataset.datasets[mapped[0]], mapped[1]
        else:
            dataset, index = dataset.dataset, mapped
    return dataset, index


def record_views(dataset: Any) -> bool:
    """Make every pipeline under ``dataset`` keep what the pictures need: each multi-view transform is
    wrapped in :class:`RecordViews` and ``PackInputs`` keeps ``view_meta`` and ``patch_cells`` as metainfo.
    Call it before the dataloader starts its workers. Returns whether a multi-view transform was found."""
    from mmpretrain.datasets.transforms import PackInputs
    found = False
    for leaf in leaf_datasets(dataset):
        transforms = leaf.pipeline.transforms
        for i, t in enumerate(transforms):
            if is_view_transform(t):
                found = True
                if not isinstance(t, RecordViews):
                    transforms[i] = RecordViews(t)
            elif isinstance(t, PackInputs):
                t.meta_keys = tuple(t.meta_keys) + tuple(k for k in RECORDED_KEYS if k not in t.meta_keys)
    return found


def _walk(leaf: Any, index: int, until_views: bool) -> Tuple[Capture, Any]:
    """Run sample ``index``'s pipeline transform by transform up to ``PackInputs`` (or, with
    ``until_views``, up to the multi-view transform); returns the capture and the transform it stopped at."""
    from mmpretrain.datasets.transforms import PackInputs
    results = copy.deepcopy(leaf.get_data_info(index))
    img_path = str(results.get('img_path', f'sample {index}'))
    image, ids, source, num_global, stop = None, None, '', None, None
    for t in leaf.pipeline.transforms:
        num_global = getattr(t, 'num_global_views', num_global)
        if isinstance(t, PackInputs) or (until_views and is_view_transform(t)):
            stop = t
            break
        step = t if isinstance(t, RecordViews) or not is_view_transform(t) else RecordViews(t)
        try:
            results = step(results)
        except Exception as exc:
            raise RuntimeError(f'{type(t).__name__} failed on {img_path}: {exc}') from exc
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
    view_meta = results.pop('view_meta', []) if not until_views else []
    return Capture(index, img_path, image, results, ids, source, view_meta, num_global), stop


def run_pipeline(dataset: Any, index: int, seed: int) -> Capture:
    """Run the pipeline of sample ``index`` transform by transform (seeded with ``seed``), stopping
    before ``PackInputs``."""
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    leaf, leaf_index = leaf_dataset(dataset, index)
    return _walk(leaf, leaf_index, until_views=False)[0]


def _find_leaf(dataset: Any, index: int, img_path: Optional[str]) -> Any:
    leaves = leaf_datasets(dataset)
    if len(leaves) > 1 and img_path is not None:  # a concatenation: the child that holds this image
        for leaf in leaves:
            if index < len(leaf) and str(leaf.get_data_info(index).get('img_path')) == img_path:
                return leaf
    return leaves[0]


def capture_from_batch(data_batch: dict, position: int, dataset: Any) -> Capture:
    """The capture of sample ``position`` of a collated batch (``{'inputs', 'data_samples'}`` as the
    dataloader yields it, before the data preprocessor). ``dataset`` (the train dataset) replays the
    pipeline up to the multi-view transform for the decoded image and its ids; the data sample must carry
    ``sample_idx``."""
    inputs, sample = data_batch['inputs'], data_batch['data_samples'][position]
    meta = sample.metainfo
    if 'sample_idx' not in meta:
        raise ValueError('the data sample has no sample_idx: cannot find its image in the dataset')
    index = int(meta['sample_idx'])
    img_path = meta.get('img_path')

    def hwc(x: Any) -> np.ndarray:
        return np.ascontiguousarray(x[position].detach().cpu().permute(1, 2, 0).numpy())

    results = dict(img=[hwc(x) for x in inputs] if isinstance(inputs, (list, tuple)) else hwc(inputs))
    if 'mask' in sample:
        results['mask'] = sample.mask.detach().cpu().numpy()
    elif data_batch.get('masks') is not None:  # PackDetConInputs: one [B, V, H, W] tensor
        results['mask'] = data_batch['masks'][position].detach().cpu().numpy()
    leaf = _find_leaf(dataset, index, None if img_path is None else str(img_path))
    prefix, stop = _walk(leaf, index, until_views=True)
    if 'patch_cells' in meta:
        results['patch_cells'] = meta['patch_cells']
    elif getattr(stop, 'num_local_sets', None):  # DetCo views whose cells were not recorded
        results['patch_cells'] = [None] * stop.num_local_sets
    return Capture(index, str(img_path) if img_path is not None else prefix.img_path, prefix.image, results,
                   prefix.ids, prefix.mask_source, list(meta.get('view_meta', [])), prefix.num_global_views)


def layout_of(results: dict) -> str:
    """'detcon', 'detco', 'views' or 'single', from the results before PackInputs."""
    imgs = results.get('img')
    if isinstance(imgs, list) and results.get('mask') is not None:
        return 'detcon'
    if isinstance(imgs, list) and 'patch_cells' in results:
        return 'detco'
    return 'views' if isinstance(imgs, list) else 'single'
