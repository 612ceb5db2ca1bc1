"""ResNet with TensorFlow/Haiku ``SAME`` padding, the network DeepMind's DetCon weights were trained as.

``SAME`` pads a stride-2 layer on the bottom/right only (for even inputs), while torch ResNets pad every side
equally; with imported Haiku weights the stock network samples a grid shifted by 1 + 2 + 4 + 8 + 16 = 31 input
pixels at res5. This variant pads exactly as Haiku does (mmcv's ``Conv2dAdaptivePadding`` and a ``SAME``
max-pool), keeps mmpretrain's key names, and adds depth 200 (DetCon's ResNet-200). It is registered in
mmpretrain's and, when mmdet is installed, mmdet's model registries under the same name.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.resnet import Bottleneck, ResNet
from torch import nn

from mmdetcon.registry import MODELS


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """(before, after) padding of TF ``SAME`` along one axis; the odd pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class MaxPool2dSamePadding(nn.Module):
    """Max-pool padded with -inf as TF/Haiku ``SAME`` (``hk.max_pool(..., padding='SAME')``)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
        x = F.pad(x, (left, right, top, bottom), value=float('-inf'))
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f'kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME'


@MODELS.register_module()
class ResNetSamePadding(ResNet):
    """mmpretrain ``ResNet`` (v1.5, ``style='pytorch'``) with ``SAME`` padding everywhere; also depth 200.

    Every convolution is ``Conv2dAdaptivePadding`` (``conv_cfg`` is fixed) and the stem max-pool pads as
    ``SAME``. Parameter names and shapes equal the stock ``ResNet``'s, so one backbone file loads into both.
    """

    arch_settings = {**ResNet.arch_settings, 200: (Bottleneck, (3, 24, 36, 3))}

    def __init__(self, depth: int, **kwargs) -> None:
        if kwargs.get('deep_stem') or kwargs.get('avg_down'):
            raise ValueError('ResNetSamePadding reproduces the plain ResNet stem and shortcut only '
                             '(deep_stem=False, avg_down=False)')
        if kwargs.get('style', 'pytorch') != 'pytorch':
            raise ValueError("ResNetSamePadding needs style='pytorch' (Haiku strides the 3x3 conv)")
        conv_cfg = kwargs.pop('conv_cfg', None)
        if conv_cfg not in (None, dict(type='Conv2dAdaptivePadding')):
            raise ValueError(f'ResNetSamePadding sets its own conv_cfg; got {conv_cfg}')
        super().__init__(depth, conv_cfg=dict(type='Conv2dAdaptivePadding'), **kwargs)
        self.maxpool = MaxPool2dSamePadding(kernel_size=3, stride=2)


def _register_in_mmdet() -> None:
    try:
        from mmdet.registry import MODELS as MMDET_MODELS
    except (ImportError, AssertionError):  # mmdet is optional for pretraining (and checks the mmcv version)
        return
    if 'ResNetSamePadding' not in MMDET_MODELS.module_dict:
        MMDET_MODELS.register_module(module=ResNetSamePadding)


_register_in_mmdet()
