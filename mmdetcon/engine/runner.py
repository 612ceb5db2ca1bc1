"""The runner every mmdetcon config uses (``runner_type='MMDetConRunner'``)."""
import copy
from typing import Dict, List, Optional, Union

import torch
from mmengine.config import Config
from mmengine.dist import is_distributed
from mmengine.hooks import Hook
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from mmdetcon.registry import RUNNERS
from mmdetcon.utils.packaging import rescope
from .hooks import EpochSeedHook, SkippedFilesHook


@RUNNERS.register_module()
class MMDetConRunner(Runner):
    """mmengine ``Runner`` that resumes exactly, tolerates unreadable files, and trains on CPU clusters.

    - Adds :class:`EpochSeedHook` (random, numpy and torch re-seeded at every epoch from the run's seed,
      the epoch and the rank) and :class:`SkippedFilesHook` (counts and limits skipped unreadable files) unless
      ``custom_hooks`` already configures them.
    - Multi-process runs without CUDA: torch's SyncBatchNorm has no CPU kernel, so there its layers
      (EMA/key copies included) become per-process BN of the same dimensionality.

    Checkpoints load through :func:`mmdetcon.engine.checkpoint.load_local_checkpoint` (any runner).
    """

    @classmethod
    def from_cfg(cls, cfg: Union[Config, dict]) -> 'MMDetConRunner':
        """mmengine's, after giving the dicts inherited through ``_base_ = 'mmdetcon::...'`` (marked
        ``_scope_='mmdetcon'`` by mmengine) the config's ``default_scope``: see :mod:`mmdetcon.utils.packaging`."""
        cfg = copy.deepcopy(cfg)
        rescope(list(cfg.values()), cfg.get('default_scope'))
        return super().from_cfg(cfg)

    def register_hooks(self, default_hooks: Optional[dict] = None,
                       custom_hooks: Optional[List[Union[Hook, dict]]] = None) -> None:
        hooks = list(custom_hooks or [])

        def configured(cls: type) -> bool:
            return any(isinstance(h, cls) or (isinstance(h, dict) and
                                              str(h.get('type')).split('.')[-1] == cls.__name__)
                       for h in hooks)

        hooks += [cls() for cls in (EpochSeedHook, SkippedFilesHook) if not configured(cls)]
        super().register_hooks(default_hooks, hooks)

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model: torch.nn.Module) -> torch.nn.Module:
        if is_distributed() and not torch.cuda.is_available():
            model = revert_sync_batchnorm(model)
        return super().wrap_model(model_wrapper_cfg, model)

    @staticmethod
    def build_dataloader(dataloader: Union[DataLoader, Dict], seed: Optional[int] = None,
                         diff_rank_seed: bool = False) -> DataLoader:
        """mmengine's, without the ``_scope_`` that mmengine gives a ``collate_fn`` inherited from another
        package's config (``_base_ = 'mmdetcon::...'`` or ``'mmpretrain::...'``): the function is called as
        ``partial(collate, **cfg)`` and would get ``_scope_`` as a keyword at the first batch."""
        collate = dataloader.get('collate_fn') if isinstance(dataloader, dict) else None
        if isinstance(collate, dict) and '_scope_' in collate:
            dataloader = dict(dataloader, collate_fn={k: v for k, v in collate.items() if k != '_scope_'})
        return Runner.build_dataloader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
