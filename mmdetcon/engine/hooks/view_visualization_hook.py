"""Pictures of the views (and segment ids / patch sets) the model is trained on, written during training."""
import os.path as osp
import random
import time
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdetcon.registry import HOOKS


@HOOKS.register_module()
class ViewVisualizationHook(Hook):
    """At the first training iteration and every ``interval`` after, draws ``browse_views.py``'s picture of
    the first ``num_images`` samples of the batch and hands it to ``runner.visualizer.add_image`` as
    ``views_<k>`` at step ``iter + 1`` (LocalVisBackend: ``<work_dir>/<timestamp>/vis_data/vis_image/
    views_<k>_<step>.png``; TensorBoard or W&B when configured).

    The picture of sample ``i`` is the one ``browse_views.py --seed s`` draws for the same pipeline output:
    DetCon ids are drawn with ``seed + i``, as there (the model's own draws stay inside its forward). Before
    training it asks the pipeline to keep each view's crop window and DetCo's patch cells (see
    :func:`~mmdetcon.visualization.record_views`); with an iteration-based loop whose workers started
    earlier these are missing and the pictures go without them. Only the main process draws; the global
    random states are restored afterwards. A drawing error is logged as a warning and ends the pictures, not
    the run. At the end it logs its share of the training time.

    Args:
        interval: Iterations between pictures.
        num_images: Samples drawn from each chosen batch.
        seed: Seed of DetCon's id draws (plus the sample index).
        stride: Stride of the feature map DetCon samples masks on (32: ResNet res5).
        num_samples: Ids drawn per view; default the model's ``num_samples`` (16 if it has none).
        dpi: Resolution of the pictures.
    """
    priority = 'LOW'

    def __init__(self, interval: int = 1000, num_images: int = 1, seed: int = 0, stride: int = 32,
                 num_samples: Optional[int] = None, dpi: int = 100) -> None:
        if interval < 1 or num_images < 1 or stride < 1 or dpi < 10:
            raise ValueError('ViewVisualizationHook: interval, num_images and stride must be >= 1 and dpi '
                             f'>= 10, got {interval}, {num_images}, {stride}, {dpi}')
        if num_samples is not None and num_samples < 1:
            raise ValueError(f'ViewVisualizationHook: num_samples must be >= 1, got {num_samples}')
        self.interval, self.num_images, self.seed = interval, num_images, seed
        self.stride, self.num_samples, self.dpi = stride, num_samples, dpi
        self.pictures, self.seconds, self.train_seconds = 0, 0.0, 0.0
        self.failed = False
        self._started = None
        self._name = 'mmdetcon'

    def before_train(self, runner) -> None:
        from mmdetcon.visualization import record_views
        self._started = time.perf_counter()
        filename = getattr(runner.cfg, 'filename', None)
        self._name = osp.splitext(osp.basename(filename))[0] if filename else runner.experiment_name
        if self.num_samples is None:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self.num_samples = int(getattr(model, 'num_samples', 16))
        if is_main_process():
            try:
                record_views(runner.train_dataloader.dataset)
            except ValueError as exc:  # a dataset without a pipeline: nothing to draw
                self.failed = True
                runner.logger.warning(f'ViewVisualizationHook: no pictures in this run: {exc}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.failed or not is_main_process() or not isinstance(data_batch, dict):
            return
        if self.pictures and not self.every_n_train_iters(runner, self.interval):
            return
        start = time.perf_counter()
        try:
            for name, picture in self.draw(data_batch, runner.train_dataloader.dataset, self._name):
                runner.visualizer.add_image(name, picture, step=runner.iter + 1)
        except Exception as exc:  # noqa: BLE001 - a picture must not end a training run
            self.failed = True
            runner.logger.warning(f'ViewVisualizationHook: no more pictures in this run, drawing failed at '
                                  f'iteration {runner.iter + 1}: {type(exc).__name__}: {exc}')
            return
        self.pictures += 1
        self.seconds += time.perf_counter() - start

    def draw(self, data_batch: dict, dataset, title: str) -> List[Tuple[str, np.ndarray]]:
        """``[(name, RGB uint8 picture)]`` for the first samples of a collated batch from ``dataset``;
        ``title`` (the config name) heads each picture. Global random states are left as they were."""
        from mmdetcon.visualization import capture_from_batch, draw_capture, picture_title
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            out = []
            for k in range(min(self.num_images, len(data_batch['data_samples']))):
                cap = capture_from_batch(data_batch, k, dataset)
                out.append((f'views_{k}', draw_capture(cap, picture_title(title, cap), self.stride,
                                                       self.num_samples, self.seed + cap.index, self.dpi)))
            return out
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])

    def after_train(self, runner) -> None:
        if self._started is None or not self.pictures:
            return
        self.train_seconds = time.perf_counter() - self._started
        runner.logger.info(f'ViewVisualizationHook: {self.pictures} picture batch(es) in {self.seconds:.2f} s, '
                           f'{100 * self.seconds / max(self.train_seconds, 1e-9):.2f} % of the '
                           f'{self.train_seconds:.1f} s of training')
