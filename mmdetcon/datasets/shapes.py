"""Synthetic "shapes" scenes: occluding textured shapes on textured backgrounds, with exact masks.

Layout written by :func:`make_shapes` under ``root``::

    {split}/images/{i:06d}.png            RGB image
    {split}/semantic/{i:06d}.png          uint8 class id per pixel (0 = background)
    {split}/instance/{i:06d}.png          uint16 instance id per pixel (0 = background, 1..n in paint order)
    {split}/.complete                     json of the generation parameters, written last
    annotations/instances_{split}.json    COCO instances (RLE masks, file names relative to {split}/images)

With ``shape_only=True`` the class is the shape alone (:data:`SHAPE_CLASSES`): colour and texture are drawn
independently of it from the same palette, so only shape tells classes apart (a colour-sensitive feature does not).

Image ``i`` depends only on ``(seed, split, i)``: generation is reproducible and parallel, and the first N
images of a larger set are the N images of a smaller one. A split folder without ``.complete`` (an
interrupted run) is regenerated; a complete one made with another ``image_size`` or ``seed`` raises
``ValueError`` unless ``overwrite=True``; one with fewer images than requested is regenerated as the superset.
"""
import json
import multiprocessing
import os
import os.path as osp
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.dist import barrier, is_main_process
from mmpretrain.datasets import BaseDataset

from mmdetcon.registry import DATASETS
from .skip_unreadable import UnreadableFileError

FORMAT_VERSION = 1

# (shape, colour name, RGB, texture); class id = position + 1.
CLASS_SPECS: Tuple[Tuple[str, str, Tuple[int, int, int], str], ...] = (
    ('circle', 'red', (220, 35, 35), 'plain'),
    ('square', 'green', (35, 175, 60), 'striped'),
    ('triangle', 'blue', (45, 80, 230), 'dotted'),
    ('ellipse', 'yellow', (240, 215, 40), 'striped'),
    ('diamond', 'magenta', (215, 45, 200), 'plain'),
    ('hexagon', 'cyan', (40, 205, 215), 'dotted'),
    ('star', 'orange', (250, 140, 25), 'plain'),
    ('cross', 'white', (240, 240, 240), 'striped'),
)
SHAPES_CLASSES: Tuple[str, ...] = tuple(f'{c}-{t}-{s}' for s, c, _, t in CLASS_SPECS)
SHAPE_CLASSES: Tuple[str, ...] = tuple(s for s, _, _, _ in CLASS_SPECS)


def shapes_classes(shape_only: bool = False) -> Tuple[str, ...]:
    """Class names (class id = position + 1) of the default or the shape-only scenes."""
    return SHAPE_CLASSES if shape_only else SHAPES_CLASSES

MIN_OBJECTS, MAX_OBJECTS = 2, 6
OBJECT_SIZE = (0.09, 0.2)  # object radius range, as a fraction of the image side
STYLES = ('textured', 'flat')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index``: a function of ``(seed, split, index)`` only."""
    return np.random.default_rng([int(seed), zlib.crc32(split.encode('utf-8')), int(index)])


def min_visible_area(image_size: int) -> int:
    """Instances whose visible part is smaller than this (pixels) are not drawn at all."""
    return max(8, round(0.004 * image_size * image_size))


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation colour, so that backgrounds do not imitate the saturated object colours."""
    h, s, v = rng.uniform(0, 180), rng.uniform(0, 90), rng.uniform(40, 215)
    hsv = np.array([[[h, s, v]]], dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A float32 (S,S,3) background: blotchy noise, a linear gradient or soft stripes."""
    c1, c2 = _muted_colour(rng), _muted_colour(rng)
    kind = rng.integers(3)
    if kind == 0:  # low-frequency blotches
        grid = int(rng.integers(3, 9))
        t = cv2.resize(rng.random((grid, grid)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif kind == 1:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        u = xx * np.cos(a) + yy * np.sin(a)
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    else:  # soft sinusoidal stripes
        a, period = rng.uniform(0, np.pi), size / rng.uniform(4, 16)
        u = xx * np.cos(a) + yy * np.sin(a)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return img + rng.normal(0, 8, (size, size, 1)).astype(np.float32)  # grain


def _regular_polygon(n: int, radius: float, start: float = 0.0) -> np.ndarray:
    angles = start + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], 1)


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (K,2) of a shape of unit radius centred at the origin."""
    if shape == 'square':
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if shape == 'triangle':
        return _regular_polygon(3, 1.1, -np.pi / 2)
    if shape == 'diamond':
        return np.array([[0, -1.1], [0.65, 0], [0, 1.1], [-0.65, 0]])
    if shape == 'hexagon':
        return _regular_polygon(6, 1.0)
    if shape == 'star':
        radii = np.where(np.arange(10) % 2 == 0, 1.15, 0.48)
        return _regular_polygon(10, 1.0, -np.pi / 2) * radii[:, None]
    if shape == 'cross':
        w = 0.35
        return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                         [-w, w], [-1, w], [-1, -w], [-w, -w]])
    raise ValueError(f'unknown shape {shape!r}')


def _shape_mask(shape: str, cx: float, cy: float, r: float, theta: float, size: int,
                yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean (S,S) mask of one shape (pixels whose centre lies inside it)."""
    if shape in ('circle', 'ellipse'):
        dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        b = r if shape == 'circle' else 0.55 * r
        a = r if shape == 'circle' else 1.15 * r
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = _unit_polygon(shape) * r @ rot.T + np.array([cx, cy]) - 0.5
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _texture(kind: str, rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean (S,S) pattern of the texture's secondary (darker) colour."""
    if kind == 'plain':
        return np.zeros((size, size), bool)
    a, period = rng.uniform(0, np.pi), max(4.0, size / 12)
    u = (xx * np.cos(a) + yy * np.sin(a) + rng.uniform(0, period)) % period
    if kind == 'striped':
        return u < period / 2
    v = (-xx * np.sin(a) + yy * np.cos(a) + rng.uniform(0, period)) % period
    return (u - period / 2) ** 2 + (v - period / 2) ** 2 < (0.3 * period) ** 2  # dotted


def render_image(seed: int, split: str, index: int, image_size: int = 128, shape_only: bool = False,
                 object_size: Sequence[float] = OBJECT_SIZE,
                 num_objects: Sequence[int] = (MIN_OBJECTS, MAX_OBJECTS), style: str = 'textured') -> dict:
    """Render image ``index``; deterministic in its arguments.

    ``object_size`` is the range of object radii (fraction of the image side), ``num_objects`` the inclusive
    range of objects drawn before occlusion culling. ``style='flat'`` draws every object in a plain grey
    (lightness drawn per object) on a plain darker grey background: the image holds nothing but shapes, so
    no colour, texture or background pattern identifies an image better than its shapes do.

    Returns a dict with ``img`` (S,S,3) uint8 RGB, ``semantic`` (S,S) uint8, ``instance`` (S,S) uint16,
    ``categories`` (class id of instance 1..n), ``num_sampled`` (objects drawn before dropping those
    whose visible part is below :func:`min_visible_area`).
    """
    rng = image_rng(seed, split, index)
    size = int(image_size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    flat = style == 'flat'
    if flat:
        img = np.full((size, size, 3), rng.uniform(30, 100), np.float32)
    else:
        img = _background(rng, size, yy, xx)

    objects = []
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        cls = int(rng.integers(1, len(CLASS_SPECS) + 1))
        shape, _, rgb, texture = CLASS_SPECS[cls - 1]
        if flat:
            rgb, texture = (rng.uniform(140, 240), ) * 3, 'plain'
        elif shape_only:  # colour and texture independent of the class
            _, _, rgb, _ = CLASS_SPECS[int(rng.integers(len(CLASS_SPECS)))]
            texture = ('plain', 'striped', 'dotted')[int(rng.integers(3))]
        r = rng.uniform(*object_size) * size
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        mask = _shape_mask(shape, cx, cy, r, rng.uniform(0, 2 * np.pi), size, yy, xx)
        colour = np.clip(np.asarray(rgb, np.float32) + (0 if flat else rng.uniform(-15, 15, 3)), 0, 255)
        pattern = _texture(texture, rng, size, yy, xx)
        objects.append((cls, mask, colour, pattern))

    # Later objects occlude earlier ones. Drop objects whose visible part is tiny; removing one only
    # uncovers earlier objects, so a single pass leaves every kept instance above the threshold.
    order = np.zeros((size, size), np.int32)
    for k, (_, mask, _, _) in enumerate(objects, 1):
        order[mask] = k
    visible = np.bincount(order.ravel(), minlength=len(objects) + 1)
    kept = [obj for k, obj in enumerate(objects, 1) if visible[k] >= min_visible_area(size)]

    instance = np.zeros((size, size), np.uint16)
    semantic = np.zeros((size, size), np.uint8)
    for k, (cls, mask, colour, pattern) in enumerate(kept, 1):
        layer = np.where(pattern[..., None], colour * 0.45, colour)
        img[mask] = layer[mask]
        instance[mask] = k
        semantic[mask] = cls
    img = img + rng.normal(0, 4, img.shape).astype(np.float32)  # sensor noise over everything
    return dict(img=np.clip(np.round(img), 0, 255).astype(np.uint8), semantic=semantic, instance=instance,
                categories=[obj[0] for obj in kept], num_sampled=len(objects))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _write_bytes_atomic(path: str, data: bytes) -> None:
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def _write_png(path: str, array: np.ndarray) -> None:
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise OSError(f'could not encode {path}')
    _write_bytes_atomic(path, buf.tobytes())


def instance_annotations(instance: np.ndarray, categories: Sequence[int]) -> List[dict]:
    """COCO annotation dicts (without ``id``/``image_id``) of instances 1..n of an instance map."""
    from pycocotools import mask as mask_utils
    anns = []
    for k, cls in enumerate(categories, 1):
        rle = mask_utils.encode(np.asfortranarray((instance == k).astype(np.uint8)))
        anns.append(dict(category_id=int(cls), iscrowd=0, area=float(mask_utils.area(rle)),
                         bbox=[float(v) for v in mask_utils.toBbox(rle)],
                         segmentation=dict(size=[int(s) for s in rle['size']],
                                           counts=rle['counts'].decode('ascii'))))
    return anns


def _generate_one(job: Tuple[str, str, int, dict]) -> Tuple[int, List[dict]]:
    split_dir, split, index, scene = job  # scene: render_image's keyword arguments
    out = render_image(split=split, index=index, **scene)
    name = f'{index:06d}.png'
    _write_png(osp.join(split_dir, 'images', name), cv2.cvtColor(out['img'], cv2.COLOR_RGB2BGR))
    _write_png(osp.join(split_dir, 'semantic', name), out['semantic'])
    _write_png(osp.join(split_dir, 'instance', name), out['instance'])
    return out['num_sampled'], instance_annotations(out['instance'], out['categories'])


def _remove_if_present(path: str) -> None:
    try:  # another process generating the same split may have removed it already
        os.remove(path)
    except FileNotFoundError:
        pass


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def make_shapes(root: str, num_images: int, image_size: int = 128, seed: int = 0, split: str = 'train',
                num_workers: int = 0, overwrite: bool = False, progress: bool = True,
                shape_only: bool = False, object_size: Sequence[float] = OBJECT_SIZE,
                num_objects: Sequence[int] = (MIN_OBJECTS, MAX_OBJECTS), style: str = 'textured') -> Dict:
    """Generate (or reuse) ``num_images`` shapes images of ``split`` under ``root``; see the module doc.

    ``object_size``, ``num_objects`` and ``style`` are :func:`render_image`'s scene parameters.

    Returns a summary dict: the parameters of the data on disk, ``generated`` (False when reused),
    ``num_instances`` and ``instances_per_class`` (only when generated).
    """
    if int(num_images) < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    if int(image_size) < 16:
        raise ValueError(f'image_size must be >= 16, got {image_size}')
    if not split or osp.basename(split) != split or split.startswith('.'):
        raise ValueError(f'split must be a plain folder name, got {split!r}')
    num_images, image_size, seed = int(num_images), int(image_size), int(seed)
    object_size = [float(v) for v in object_size]
    num_objects = [int(v) for v in num_objects]
    if len(object_size) != 2 or not 0 < object_size[0] <= object_size[1] <= 1:
        raise ValueError(f'object_size must be (min, max) radii with 0 < min <= max <= 1, got {object_size}')
    if len(num_objects) != 2 or not 1 <= num_objects[0] <= num_objects[1]:
        raise ValueError(f'num_objects must be (min, max) with 1 <= min <= max, got {num_objects}')
    if style not in STYLES:
        raise ValueError(f'style must be one of {STYLES}, got {style!r}')
    if style == 'flat' and not shape_only:
        raise ValueError("style='flat' draws no class colours or textures: it needs shape_only=True (--shape-only)")
    split_dir = osp.join(root, split)
    marker, started = osp.join(split_dir, '.complete'), osp.join(split_dir, '.generating')
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    classes = shapes_classes(shape_only)
    params = dict(format=FORMAT_VERSION, split=split, num_images=num_images, image_size=image_size,
                  seed=seed, classes=list(classes), object_size=object_size, num_objects=num_objects,
                  style=style)
    # markers written before object_size / num_objects / style existed hold the defaults
    legacy = dict(object_size=list(OBJECT_SIZE), num_objects=[MIN_OBJECTS, MAX_OBJECTS], style='textured')

    done = _read_json(marker) if osp.isfile(marker) else None
    if done is not None and not overwrite:
        differs = {k: (done.get(k, legacy.get(k)), v) for k, v in params.items()
                   if k != 'num_images' and done.get(k, legacy.get(k)) != v}
        if differs:
            what = ', '.join(f'{k}={old!r} (requested {new!r})' for k, (old, new) in differs.items())
            raise ValueError(f'{split_dir} holds shapes data generated with {what}; delete it, use another '
                             'root, or pass overwrite=True (--overwrite) to regenerate it')
        if done.get('num_images', 0) >= num_images and osp.isfile(ann_file):
            return dict(done, root=root, generated=False)
    elif (done is None and not overwrite and osp.isdir(split_dir) and os.listdir(split_dir)
          and not osp.exists(started)):
        raise ValueError(f'{split_dir} exists and was not written by make_shapes (no .complete marker); '
                         'refusing to overwrite it')

    for sub in ('images', 'semantic', 'instance'):
        os.makedirs(osp.join(split_dir, sub), exist_ok=True)
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    _remove_if_present(marker)
    _write_bytes_atomic(started, json.dumps(params).encode())

    scene = dict(seed=seed, image_size=image_size, shape_only=shape_only, object_size=tuple(object_size),
                 num_objects=tuple(num_objects), style=style)
    jobs = [(split_dir, split, i, scene) for i in range(num_images)]
    from tqdm import tqdm
    bar = dict(total=num_images, desc=f'shapes {split}', unit='img', disable=not progress)
    if num_workers > 0:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context('fork' if 'fork' in methods else None)
        with ctx.Pool(num_workers) as pool:
            results = list(tqdm(pool.imap(_generate_one, jobs, chunksize=8), **bar))
    else:
        results = [_generate_one(job) for job in tqdm(jobs, **bar)]

    images, annotations = [], []
    for i, (num_sampled, anns) in enumerate(results):
        images.append(dict(id=i, file_name=f'{i:06d}.png', height=image_size, width=image_size,
                           num_sampled=num_sampled))
        for ann in anns:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=i))
    coco = dict(info=dict(description='mmdetcon synthetic shapes', version=str(FORMAT_VERSION),
                          split=split, seed=seed),
                images=images, annotations=annotations,
                categories=[dict(id=k, name=name, supercategory=CLASS_SPECS[k - 1][0])
                            for k, name in enumerate(classes, 1)])
    _write_bytes_atomic(ann_file, json.dumps(coco).encode())
    _write_bytes_atomic(marker, json.dumps(params, indent=1).encode())
    _remove_if_present(started)
    per_class = np.bincount([a['category_id'] for a in annotations], minlength=len(classes) + 1)
    return dict(params, root=root, generated=True, num_instances=len(annotations),
                instances_per_class={n: int(c) for n, c in zip(classes, per_class[1:])})


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
@DATASETS.register_module()
class ShapesDataset(BaseDataset):
    """Shapes images for self-supervised pretraining; generated under ``data_root`` on first use.

    Args:
        data_root: Root of the layout in the module doc.
        split: Sub-folder (``train``/``val``/...).
        num_images: Images used (and generated if missing). With ``generate=False`` it may be None
            (every image in the folder).
        image_size, seed, shape_only, object_size, num_objects, style: Generation parameters (ignored when
            ``generate=False``, except that ``shape_only`` still selects the class names).
        with_masks: None, ``'instance'``, ``'semantic'`` or ``'masks_fh'``: adds ``seg_map_path`` to each
            data info, pointing at that id map (load it with ``LoadIdMap``). ``masks_fh`` maps are written
            by ``tools/masks/generate_masks.py`` and may be absent (``LoadIdMap(fallback='felzenszwalb')``).
        generate: False turns the dataset into a plain image-folder reader of
            ``{data_root}/{split}/images`` (any image names; maps must share the stem, as ``.png``).
        generate_workers: Processes used for generation.
    """
    METAINFO = dict(classes=SHAPES_CLASSES)

    def __init__(self, data_root: str = 'data/shapes', split: str = 'train',
                 num_images: Optional[int] = 256, image_size: int = 128, seed: int = 0,
                 with_masks: Optional[str] = None, generate: bool = True, generate_workers: int = 0,
                 pipeline: Sequence = (), shape_only: bool = False,
                 object_size: Sequence[float] = OBJECT_SIZE,
                 num_objects: Sequence[int] = (MIN_OBJECTS, MAX_OBJECTS), style: str = 'textured',
                 **kwargs) -> None:
        if with_masks not in (None, 'instance', 'semantic', 'masks_fh'):
            raise ValueError("with_masks must be None, 'instance', 'semantic' or 'masks_fh', "
                             f'got {with_masks!r}')
        if num_images is None and generate:
            raise ValueError('num_images=None needs generate=False')
        self.split, self.num_images, self.image_size, self.seed = split, num_images, image_size, seed
        self.with_masks, self.generate, self.generate_workers = with_masks, generate, generate_workers
        self.shape_only, self.object_size, self.num_objects = shape_only, object_size, num_objects
        self.style = style
        if shape_only:
            kwargs['metainfo'] = dict(kwargs.get('metainfo') or {}, classes=SHAPE_CLASSES)
        kwargs.setdefault('data_prefix', dict(img_path=osp.join(split, 'images')))
        super().__init__(ann_file='', data_root=data_root, pipeline=pipeline, **kwargs)

    def load_data_list(self) -> List[dict]:
        root = self.data_root
        if self.generate:
            if is_main_process():
                make_shapes(root, self.num_images, self.image_size, self.seed, self.split,
                            num_workers=self.generate_workers, shape_only=self.shape_only,
                            object_size=self.object_size, num_objects=self.num_objects, style=self.style)
            barrier()
        img_dir = self.data_prefix['img_path']
        if not osp.isdir(img_dir):
            raise FileNotFoundError(f'image folder not found: {img_dir} (generate=False; create it with '
                                    f'tools/data/make_shapes.py --out {root} or set generate=True)')
        if self.generate:
            names = [f'{i:06d}.png' for i in range(self.num_images)]
        else:
            names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
            if not names or (self.num_images is not None and len(names) < self.num_images):
                raise ValueError(f'{img_dir} holds {len(names)} images, '
                                 f'{self.num_images or "at least 1"} requested')
            names = names[:self.num_images]
        data_list = []
        for i, name in enumerate(names):
            info = dict(img_path=osp.join(img_dir, name), sample_idx=i)
            if self.with_masks:
                seg = osp.join(root, self.split, self.with_masks, osp.splitext(name)[0] + '.png')
                if self.with_masks != 'masks_fh' and not osp.isfile(seg):
                    raise FileNotFoundError(f'{self.with_masks} map not found: {seg}')
                info['seg_map_path'] = seg
            data_list.append(info)
        return data_list

    def prepare_data(self, idx: int):
        """Run the pipeline; a failure names the sample's file (mmcv's loader does not always)."""
        info = self.get_data_info(idx)
        path = info['img_path']
        try:
            return self.pipeline(info)
        except Exception as exc:
            # mmcv's cv2 loader asserts 'failed to load image: <path>'; an empty file fails inside cv2.
            if (isinstance(exc, AssertionError) and path in str(exc)) or (
                    osp.isfile(path) and osp.getsize(path) == 0):
                raise UnreadableFileError(
                    f'cannot decode image {path}: the file is empty, corrupt or not an image') from exc
            if path in str(exc) or info.get('seg_map_path', '\0') in str(exc):
                raise
            raise RuntimeError(f'failed to load or transform {path}: {type(exc).__name__}: '
                               f'{str(exc).strip()}') from exc
