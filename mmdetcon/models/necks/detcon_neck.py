"""DetCon projector: mask pooling of the last feature map, then an MLP applied to every pooled row."""
from typing import List, Optional, Tuple, Union

import torch
from mmpretrain.models import NonLinearNeck

from mmdetcon.registry import MODELS
from ..utils.mask_pooling import pool_masks


@MODELS.register_module()
class DetConNeck(NonLinearNeck):
    """Pool the features of each sampled mask and project them: [B,C,h,w] -> [B,R,out_channels].

    The MLP is mmpretrain's ``NonLinearNeck`` without global pooling, defaulting to DetCon's
    projector Linear(C, 4096, bias) - BN - ReLU - Linear(4096, 256, no bias). Its BN normalises
    over all B*R rows, duplicated masks included.
    """

    def __init__(self,
                 in_channels: int,
                 hid_channels: int = 4096,
                 out_channels: int = 256,
                 num_layers: int = 2,
                 with_bias: bool = True,
                 with_last_bn: bool = False,
                 with_last_bias: bool = False,
                 norm_cfg: dict = dict(type='SyncBN'),
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                 ]) -> None:
        super().__init__(in_channels, hid_channels, out_channels, num_layers=num_layers,
                         with_bias=with_bias, with_last_bn=with_last_bn,
                         with_last_bias=with_last_bias, with_avg_pool=False, norm_cfg=norm_cfg,
                         init_cfg=init_cfg)

    def forward(self, x: Tuple[torch.Tensor], cell_ids: torch.Tensor,
                ids: torch.Tensor) -> torch.Tensor:
        """``x``: backbone outputs (the last one, [B,C,h,w], is pooled); ``cell_ids`` [B,h*w] from
        :func:`downsample_masks`; ``ids`` [B,R] sampled ids. Returns [B,R,out_channels]."""
        pooled = pool_masks(x[-1], cell_ids, ids)  # [B,R,C]
        B, R, C = pooled.shape
        return super().forward((pooled.reshape(B * R, C), ))[0].view(B, R, -1)
