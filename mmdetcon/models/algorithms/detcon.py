"""DetCon: contrastive detection over image segments (Hénaff et al. 2021), BYOL form (DetCon-B) and
SimCLR form (DetCon-S)."""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA
from mmpretrain.structures import DataSample

from mmdetcon.registry import MODELS
from ..utils.gather import rank_mean
from ..utils.mask_pooling import downsample_masks, sample_mask_ids


class _DetConBase(BaseSelfSupervisor):
    """Shared mask handling. ``inputs`` holds 2 views [B,3,H,W]; each data sample carries ``mask``
    (2,H,W): the image-level segment ids seen by each view. Every view samples ``num_samples`` ids
    among those owning a cell of the backbone's last feature map. The returned loss and statistics
    are means over ranks (gradients stay local)."""

    def __init__(self, backbone: dict, neck: dict, head: dict, num_samples: int = 16,
                 pretrained: Optional[str] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if num_samples < 1:
            raise ValueError(f'{type(self).__name__}: num_samples must be >= 1, got {num_samples}')
        self.num_samples = num_samples

    def _views_and_masks(self, inputs: List[torch.Tensor],
                         data_samples: List[DataSample]) -> Tuple[List[torch.Tensor], torch.Tensor]:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f'{name} expects a list of 2 views, got '
                             f'{len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs)}')
        if not data_samples or any('mask' not in ds for ds in data_samples):
            raise ValueError(f'{name} needs data_samples[i].mask, the (2, H, W) per-view segment ids '
                             '(pack them with PackInputs from a mask-carrying multi-view pipeline)')
        masks = torch.stack([ds.mask for ds in data_samples]).long()  # [B,2,H,W]
        B, _, H, W = inputs[0].shape
        if masks.shape != (B, 2, H, W) or inputs[1].shape[-2:] != (H, W):
            raise ValueError(f'{name}: masks of shape {tuple(masks.shape)} do not match the views '
                             f'{tuple(inputs[0].shape)}, {tuple(inputs[1].shape)}; expected '
                             f'[B, 2, H, W] = {(B, 2, H, W)}')
        return list(inputs), masks

    def _encode_views(self, inputs: List[torch.Tensor], data_samples: List[DataSample]) -> Tuple[
            List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """Per view: cell ids [B,h*w] on the last feature map's grid, sampled ids [B,R] and the
        projections [B,R,D] of the online network."""
        views, masks = self._views_and_masks(inputs, data_samples)
        cells, ids, proj = [], [], []
        for v, img in enumerate(views):
            feats = self.backbone(img)
            cells.append(downsample_masks(masks[:, v], tuple(feats[-1].shape[-2:])))
            ids.append(sample_mask_ids(cells[-1], self.num_samples))
            proj.append(self.neck(feats, cells[-1], ids[-1]))
        return cells, ids, proj

    @staticmethod
    @torch.no_grad()
    def _stats(cells: List[torch.Tensor], ids: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Logged only (no 'loss' in the keys): present masks per view, rows with a positive."""
        present = [(c.sort(1).values.diff(dim=1) != 0).sum(1).float().add(1).mean() for c in cells]
        matched = [(a[:, :, None] == b[:, None, :]).any(-1).float().mean()
                   for a, b in ((ids[0], ids[1]), (ids[1], ids[0]))]
        return dict(masks_v1=present[0], masks_v2=present[1], matched_rows=sum(matched) / 2)


@MODELS.register_module()
class DetConB(_DetConBase):
    """DetCon-B: online backbone + :class:`DetConNeck` projector + :class:`DetConHead` (predictor
    and loss); the target (backbone + projector) is a cosine EMA of the online network. The online
    and target networks use the same sampled ids for a view.

    ``base_momentum`` / ``end_momentum`` follow mmengine's convention (momentum = 1 - tau): 0.004 ->
    0 is DetCon's tau 0.996 -> 1. The EMA copies the online weights at its first update.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, base_momentum: float = 0.004,
                 end_momentum: float = 0., num_samples: int = 16, **kwargs) -> None:
        super().__init__(backbone, neck, head, num_samples=num_samples, **kwargs)
        self.target_net = CosineEMA(nn.Sequential(self.backbone, self.neck),
                                    momentum=base_momentum, end_momentum=end_momentum)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        cells, ids, online = self._encode_views(inputs, data_samples)
        with torch.no_grad():
            self.target_net.update_parameters(nn.Sequential(self.backbone, self.neck))
            backbone_t, neck_t = self.target_net.module
            target = [neck_t(backbone_t(img), c, i) for img, c, i in zip(inputs, cells, ids)]
        loss = self.head.loss(online[0], online[1], ids[0], ids[1], target[0], target[1])
        return rank_mean(dict(loss=loss, **self._stats(cells, ids)))


@MODELS.register_module()
class DetConS(_DetConBase):
    """DetCon-S: one network (backbone + :class:`DetConNeck`), no predictor, no EMA; the loss
    (``DetConLoss(simclr=True)`` in a :class:`DetConHead`) contrasts the projections of both views
    with gradients through queries and keys."""

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        cells, ids, proj = self._encode_views(inputs, data_samples)
        loss = self.head.loss(proj[0], proj[1], ids[0], ids[1])
        return rank_mean(dict(loss=loss, **self._stats(cells, ids)))
