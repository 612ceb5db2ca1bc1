"""DetCo: MoCo v2 with global and local (jigsaw) contrast at every ResNet stage (Xie et al. 2021)."""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmdetcon.registry import MODELS
from ..utils.batch_shuffle import batch_shuffle_multi, batch_unshuffle_multi
from ..utils.gather import rank_mean
from ..utils.queue import FeatureQueues


@MODELS.register_module()
class DetCo(BaseSelfSupervisor):
    """DetCo with a momentum key encoder (backbone + all heads), Shuffle-BN and 8 queues.

    ``inputs`` is a list of ``2 + 2 * num_patches`` views [N, 3, H, W]: the query and key global views,
    then the query patch set, then the key patch set (slot order). The neck is a :class:`DetCoNeck`,
    the head a :class:`DetCoLoss`. ``momentum`` follows mmengine (0.001 = key encoder m 0.999). The
    returned losses and terms are means over ranks (gradients stay local).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 queue_len: int = 65536,
                 feat_dim: int = 128,
                 momentum: float = 0.001,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.encoder_k = ExponentialMovingAverage(nn.Sequential(self.backbone, self.neck), momentum)
        self.num_stages = len(self.neck.in_channels)
        self.stages = [f's{i + 2}' for i in range(self.num_stages)]
        self.queues = FeatureQueues([f'{kind}_{s}' for kind in ('global', 'local') for s in self.stages],
                                    feat_dim, queue_len)

    @torch.no_grad()
    def _momentum_update(self) -> None:
        """``encoder_k.update_parameters(backbone + neck)`` of mmengine's EMA (interval 1), decided on the
        device: the first update copies (lerp weight 1, exact), later ones lerp by ``momentum``; buffers
        are copied. mmengine tests ``steps == 0`` in Python, a host sync every step on a GPU."""
        ema = self.encoder_k
        weight = torch.where(ema.steps == 0, 1.0, ema.momentum).to(torch.float32)  # 0-dim, on the device
        online = nn.Sequential(self.backbone, self.neck)
        for avg, src in zip(ema.module.parameters(), online.parameters()):  # encoder_k is a deepcopy
            avg.lerp_(src, weight.to(avg.dtype))
        torch._foreach_copy_(list(ema.module.buffers()), list(online.buffers()))
        ema.steps += 1

    def _encode(self, backbone: nn.Module, neck: nn.Module, views: torch.Tensor,
                patches: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Globals [N,3,H,W] and patch sets [N,P,3,h,w] -> per-stage embeddings, two backbone calls."""
        flat = patches.flatten(0, 1)  # [P*N, 3, h, w], rows P*n..P*n+P-1 = image n
        return neck(backbone(views), backbone(flat))

    def _split_views(self, inputs: List[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        p = self.neck.num_patches
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2 + 2 * p:
            got = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f'DetCo expects 2 global views + 2 sets of {p} patches = {2 + 2 * p} '
                             f'views (DetCoViews pipeline), got {got}')
        return (inputs[0], inputs[1], torch.stack(inputs[2:2 + p], dim=1),
                torch.stack(inputs[2 + p:], dim=1))

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        img_q, img_k, patches_q, patches_k = self._split_views(inputs)
        q_global, q_local = self._encode(self.backbone, self.neck, img_q, patches_q)

        with torch.no_grad():
            self._momentum_update()
            # Shuffle-BN: an image's key view and its 9 patches move together.
            (img_k, patches_k), perm = batch_shuffle_multi(img_k, patches_k)
            k_global, k_local = self._encode(*self.encoder_k.module, img_k, patches_k)
            keys = batch_unshuffle_multi(torch.cat(k_global + k_local, dim=1), perm)
            keys = list(keys.split(k_global[0].shape[1], dim=1))
            k_global, k_local = keys[:self.num_stages], keys[self.num_stages:]

        queues = self.queues
        losses = self.head(q_global, k_global, q_local, k_local,
                           [queues[f'global_{s}'] for s in self.stages],
                           [queues[f'local_{s}'] for s in self.stages])
        # After the loss: the current keys are never negatives for themselves.
        queues.enqueue({f'{kind}_{s}': k for kind, ks in (('global', k_global), ('local', k_local))
                        for s, k in zip(self.stages, ks)})
        return rank_mean(losses)
