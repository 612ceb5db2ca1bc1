"""DetCo's per-stage heads: a global MoCo v2 MLP and a local (jigsaw) MLP for every ResNet stage."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.necks import MoCoV2Neck

from mmdetcon.registry import MODELS


def regroup_patches(x: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Image-major patch rows [P*N, C] (rows P*n..P*n+P-1 = image n, in slot order) -> [N, P*C]."""
    if x.dim() != 2 or x.shape[0] % num_patches != 0:
        raise ValueError(f'regroup_patches: expected [{num_patches}*N, C], got {tuple(x.shape)}')
    return x.reshape(x.shape[0] // num_patches, num_patches * x.shape[1])


def _local_hidden(local_hid_channels: Union[float, Sequence[int]],
                  in_channels: Sequence[int]) -> List[int]:
    if isinstance(local_hid_channels, (list, tuple)):
        if len(local_hid_channels) != len(in_channels):
            raise ValueError(f'DetCoNeck: local_hid_channels {list(local_hid_channels)} needs one '
                             f'width per stage ({len(in_channels)})')
        return [int(h) for h in local_hid_channels]
    return [int(round(local_hid_channels * c)) for c in in_channels]


@MODELS.register_module()
class DetCoNeck(BaseModule):
    """4 global + 4 local heads (separate weights), each a MoCo v2 fc-relu-fc with L2-normalised output.

    Args:
        in_channels: channels of the backbone stages used, shallow to deep (ResNet-50: 256..2048).
        out_channels: embedding size D.
        num_patches: patches per local set (3x3 jigsaw = 9).
        global_hid_channels: hidden width factor of the global heads (1.0 = C_i, as MoCo v2).
        local_hid_channels: hidden width of the local heads: a factor of C_i (default 1.0, i.e. H_i = C_i;
            9.0 gives the 9*C_i width of some reimplementations) or one width per stage.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 out_channels: int = 128,
                 num_patches: int = 9,
                 global_hid_channels: float = 1.0,
                 local_hid_channels: Union[float, Sequence[int]] = 1.0,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = list(in_channels)
        self.num_patches = num_patches
        self.local_hid_channels = _local_hidden(local_hid_channels, self.in_channels)
        self.global_heads = nn.ModuleList(
            MoCoV2Neck(c, int(round(global_hid_channels * c)), out_channels, with_avg_pool=True)
            for c in self.in_channels)
        self.local_heads = nn.ModuleList(
            MoCoV2Neck(num_patches * c, h, out_channels, with_avg_pool=False)
            for c, h in zip(self.in_channels, self.local_hid_channels))

    def _check(self, feats: Sequence[torch.Tensor], kind: str) -> None:
        channels = [f.shape[1] for f in feats]
        if channels != self.in_channels:
            raise ValueError(f'DetCoNeck: {kind} features have channels {channels}, '
                             f'expected {self.in_channels} (backbone out_indices vs in_channels)')

    def forward_global(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Stage maps [N, C_i, H, W] -> normalised embeddings [N, D] per stage."""
        self._check(feats, 'global')
        return [F.normalize(head((f, ))[0], dim=1) for head, f in zip(self.global_heads, feats)]

    def forward_local(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Patch stage maps [P*N, C_i, h, w] (image-major) -> normalised embeddings [N, D] per stage."""
        self._check(feats, 'local')
        out = []
        for head, f in zip(self.local_heads, feats):
            pooled = f.mean(dim=(2, 3))  # [P*N, C_i]
            out.append(F.normalize(head((regroup_patches(pooled, self.num_patches), ))[0], dim=1))
        return out

    def forward(self, global_feats: Sequence[torch.Tensor],
                local_feats: Sequence[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        return self.forward_global(global_feats), self.forward_local(local_feats)
