"""DetCon: contrastive detection over image segments (Hénaff et al. 2021), BYOL form (DetCon-B) and
SimCLR form (DetCon-S), and the data preprocessor that moves their batched id maps."""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA, SelfSupDataPreprocessor
from mmpretrain.structures import DataSample

from mmdetcon.registry import MODELS
from ..utils.gather import rank_mean
from ..utils.mask_pooling import NUM_MASK_IDS, downsample_masks, sample_mask_ids


@MODELS.register_module()
class DetConDataPreprocessor(SelfSupDataPreprocessor):
    """``SelfSupDataPreprocessor`` that also moves the batch's id maps.

    ``data['masks']`` ([B, V, H, W] integers, one tensor collated from ``PackDetConInputs``) goes to
    the model's device in one copy and is handed to the model as ``masks``. Copies are
    ``non_blocking`` by default: from the loader's pinned memory (``pin_memory=True``) they overlap
    the host; from pageable memory they are ordinary copies. Arguments as
    ``SelfSupDataPreprocessor``.
    """

    def __init__(self, *args, non_blocking: Optional[bool] = True, **kwargs) -> None:
        super().__init__(*args, non_blocking=non_blocking, **kwargs)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = dict(data)
        masks = data.pop('masks', None)
        out = super().forward(data, training)
        if masks is not None:
            out['masks'] = self.cast_data(masks)
        return out


class _DetConBase(BaseSelfSupervisor):
    """Shared mask handling. ``inputs`` holds 2 views [B,3,H,W]; ``masks`` [B,2,H,W] (from
    ``PackDetConInputs`` + ``DetConDataPreprocessor``) the image-level segment ids seen by each view
    (without ``masks``, each data sample's ``mask`` (2,H,W) is used). Every view samples
    ``num_samples`` ids among those owning a cell of the backbone's last feature map. Ids must lie in
    [0, ``num_mask_ids``), as ``MultiViewWithMask(num_mask_ids=...)`` ensures (use the same value);
    any other id is pooled into one spare segment, unchecked, so that the step never waits for the
    device. The returned loss and statistics are means over ranks (gradients stay local)."""

    def __init__(self, backbone: dict, neck: dict, head: dict, num_samples: int = 16,
                 num_mask_ids: int = NUM_MASK_IDS, pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if num_samples < 1:
            raise ValueError(f'{type(self).__name__}: num_samples must be >= 1, got {num_samples}')
        if num_mask_ids < 1:
            raise ValueError(f'{type(self).__name__}: num_mask_ids must be >= 1, got {num_mask_ids}')
        self.num_samples = num_samples
        self.num_mask_ids = num_mask_ids

    def forward(self, inputs: List[torch.Tensor], data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor', masks: Optional[torch.Tensor] = None):
        """As ``BaseSelfSupervisor.forward``; ``masks`` (the batched id maps) go to :meth:`loss`."""
        if mode == 'loss':
            return self.loss(inputs, data_samples, masks=masks)
        return super().forward(inputs, data_samples, mode)

    def _views_and_masks(self, inputs: List[torch.Tensor], data_samples: Optional[List[DataSample]],
                         masks: Optional[torch.Tensor] = None
                         ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f'{name} expects a list of 2 views, got '
                             f'{len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs)}')
        if masks is None:
            if not data_samples or any('mask' not in ds for ds in data_samples):
                raise ValueError(f'{name} needs the views\' segment ids: `masks` [B, 2, H, W] '
                                 '(PackDetConInputs + DetConDataPreprocessor) or data_samples[i].mask '
                                 '(2, H, W) (PackInputs) from a MultiViewWithMask pipeline')
            masks = torch.stack([ds.mask for ds in data_samples])  # [B,2,H,W]
        B, _, H, W = inputs[0].shape
        if (not isinstance(masks, torch.Tensor) or masks.shape != (B, 2, H, W)
                or inputs[1].shape[-2:] != (H, W)):
            raise ValueError(f'{name}: masks of shape {tuple(getattr(masks, "shape", ()))} do not '
                             f'match the views {tuple(inputs[0].shape)}, {tuple(inputs[1].shape)}; '
                             f'expected [B, 2, H, W] = {(B, 2, H, W)}')
        return list(inputs), masks

    def _encode_views(self, inputs: List[torch.Tensor], data_samples: Optional[List[DataSample]],
                      masks: Optional[torch.Tensor] = None) -> Tuple[
            List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """Per view: cell ids [B,h*w] on the last feature map's grid, sampled ids [B,R] and the
        projections [B,R,D] of the online network."""
        views, masks = self._views_and_masks(inputs, data_samples, masks)
        cells, ids, proj = [], [], []
        for v, img in enumerate(views):
            feats = self.backbone(img)
            cells.append(downsample_masks(masks[:, v], tuple(feats[-1].shape[-2:]),
                                          self.num_mask_ids))
            ids.append(sample_mask_ids(cells[-1], self.num_samples))
            proj.append(self.neck(feats, cells[-1], ids[-1]))
        return cells, ids, proj

    @staticmethod
    @torch.no_grad()
    def _stats(cells: List[torch.Tensor], ids: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Logged only (no 'loss' in the keys): present masks per view, rows with a positive. Kept
        as tensors: nothing in the step reads them on the host (mmengine's RuntimeInfoHook converts
        the returned scalars after the step)."""
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

    def loss(self, inputs: List[torch.Tensor], data_samples: Optional[List[DataSample]] = None,
             masks: Optional[torch.Tensor] = None, **kwargs) -> Dict[str, torch.Tensor]:
        cells, ids, online = self._encode_views(inputs, data_samples, masks)
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

    def loss(self, inputs: List[torch.Tensor], data_samples: Optional[List[DataSample]] = None,
             masks: Optional[torch.Tensor] = None, **kwargs) -> Dict[str, torch.Tensor]:
        cells, ids, proj = self._encode_views(inputs, data_samples, masks)
        loss = self.head.loss(proj[0], proj[1], ids[0], ids[1])
        return rank_mean(dict(loss=loss, **self._stats(cells, ids)))
