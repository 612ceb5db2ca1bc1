"""DetCon head: the predictor MLP of DetCon-B (none in DetCon-S) followed by the DetCon loss."""
from typing import Optional

import torch
from mmengine.model import BaseModule

from mmdetcon.registry import MODELS


@MODELS.register_module()
class DetConHead(BaseModule):
    """Args:
        loss: a ``DetConLoss`` config (``simclr=True`` for DetCon-S).
        predictor: DetCon-B predictor, e.g. ``NonLinearNeck(256, 4096, 256, with_bias=True,
            with_last_bn=False, with_avg_pool=False)``, applied to [B*R, D] rows; None for DetCon-S.
    """

    def __init__(self, loss: dict, predictor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.predictor = MODELS.build(predictor) if predictor is not None else None
        self.loss_module = MODELS.build(loss)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """[B,R,D] -> [B,R,D']: the predictor applied row-wise (identity without one)."""
        if self.predictor is None:
            return z
        B, R, D = z.shape
        return self.predictor((z.reshape(B * R, D), ))[0].view(B, R, -1)

    def loss(self, online1: torch.Tensor, online2: torch.Tensor, ids1: torch.Tensor,
             ids2: torch.Tensor, target1: Optional[torch.Tensor] = None,
             target2: Optional[torch.Tensor] = None) -> torch.Tensor:
        """DetCon-B: online projections and target projections [B,R,D] of both views;
        DetCon-S: the projections only (no targets). ``ids*`` [B,R] sampled mask ids."""
        if target1 is None or target2 is None:
            if self.predictor is not None:
                raise ValueError('DetConHead: a head with a predictor (DetCon-B) needs targets')
            return self.loss_module(online1, online2, ids1, ids2)
        return self.loss_module(self.predict(online1), self.predict(online2), target1, target2,
                                ids1, ids2)
