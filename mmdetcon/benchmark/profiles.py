"""Benchmark profiles (the equal budget every method gets) and the methods compared."""
import os.path as osp
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Pretraining config of each method on the shapes scenes; 'random' is the untrained backbone (the floor).
METHODS: Dict[str, str] = {
    'detcon-b': 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'detcon-s': 'configs/detcon/detcon-s_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'detco': 'configs/detco/detco_resnet18_1xb32-coslr-5e_shapes.py',
    'byol': 'configs/baselines/byol_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'mocov2': 'configs/baselines/mocov2_resnet18_1xb32-coslr-5e_shapes.py',
    'simclr': 'configs/baselines/simclr_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'densecl': 'configs/baselines/densecl_resnet18_1xb32-coslr-5e_shapes.py',
    'random': '',
}
# The image-level baseline each object-level method is read against.
PAIRS: Tuple[Tuple[str, str], ...] = (('detcon-b', 'byol'), ('detcon-s', 'simclr'), ('detco', 'mocov2'))
# DetCon-B's mask sources: the main rows use FH; the ablation adds the others.
MASK_SOURCES: Tuple[str, ...] = ('grid', 'fh', 'gt')


@dataclass(frozen=True)
class Profile:
    """One budget, identical for every method.

    The backbone is a ResNet-18 of width ``base_channels`` (64 = the standard one) with ``strides``; views are
    ``image_size`` px, so the last feature map has ``image_size / 16`` cells per side with strides (1, 2, 2, 1).
    The default budget is 20 480 images seen: 5 epochs (the shapes configs' own schedule, 1 warm-up epoch where
    they have one) of 4096 images; at equal steps, more distinct images generalise better (see docs/benchmark.md).
    ``lr_multipliers`` scale each config's lr (the recipe's, linearly scaled to batch 32): the sweep's first points,
    run on seed 0 and scored on the held-out ``val`` split; while the best point is an end of the sweep, the sweep
    goes one ×4 step further on that side, within ``lr_bounds`` (so the selected lr has a swept lr on each side).
    ``weight_decays`` is the probes' L2 grid, chosen on ``val``.
    ``shape_only``, ``object_size``, ``num_objects`` and ``style`` are the scenes' generation parameters
    (:func:`mmdetcon.datasets.shapes.render_image`): by default flat grey shapes, 1-3 per image, radius 15-30 %
    of the side, the class being the shape alone (docs/benchmark.md says why).
    """
    name: str
    image_size: int = 64
    train_images: int = 4096
    probe_images: int = 512
    val_images: int = 256
    test_images: int = 256
    epochs: int = 5
    batch_size: int = 32
    base_channels: int = 32
    strides: Tuple[int, ...] = (1, 2, 2, 1)
    lr_multipliers: Tuple[float, ...] = (4.0, 16.0, 64.0)
    lr_bounds: Tuple[float, ...] = (1 / 16, 1024.0)
    weight_decays: Tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    probe_iters: int = 100
    methods: Tuple[str, ...] = tuple(METHODS)
    ablation: Tuple[str, ...] = ('grid', 'gt')
    grid_size: int = 4
    data_seed: int = 0
    shape_only: bool = True
    object_size: Tuple[float, ...] = (0.15, 0.3)
    num_objects: Tuple[int, ...] = (1, 3)
    style: str = 'flat'
    extra: Dict[str, str] = field(default_factory=dict)

    def scene(self) -> dict:
        """``make_shapes`` / shapes-dataset arguments of the profile's scenes (besides ``image_size``)."""
        return dict(seed=self.data_seed, shape_only=self.shape_only, object_size=tuple(self.object_size),
                    num_objects=tuple(self.num_objects), style=self.style)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> 'Profile':
        return replace(self, **changes)


PROFILES: Dict[str, Profile] = {
    'default': Profile(name='default'),
    # a smoke run of every stage: tiny images, two methods and the floor, two iterations each
    'quick': Profile(name='quick', image_size=32, train_images=16, probe_images=16, val_images=8, test_images=8,
                     epochs=1, batch_size=8, base_channels=16, lr_multipliers=(1.0, ), lr_bounds=(1.0, 1.0),
                     weight_decays=(1e-3, ),
                     probe_iters=20, methods=('detcon-b', 'byol', 'random'), ablation=('grid', )),
}
