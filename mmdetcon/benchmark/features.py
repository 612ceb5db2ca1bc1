"""Frozen-backbone features and the shapes labels the probes read, extracted once per backbone and split."""
import json
import os.path as osp
from typing import Dict

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .profiles import Profile

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)  # RGB, as the pretraining preprocessor
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


def _read(path: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(path, flags)
    if img is None:
        raise FileNotFoundError(f'cannot read {path}')
    return img


def load_labels(data_root: str, split: str, num: int) -> Dict[str, torch.Tensor]:
    """``semantic`` (N,H,W) class ids (0 = background), ``instance`` (N,H,W) ids, ``multilabel`` (N,K) 0/1."""
    with open(osp.join(data_root, 'annotations', f'instances_{split}.json')) as f:
        num_classes = len(json.load(f)['categories'])
    names = [f'{i:06d}.png' for i in range(num)]
    sem = np.stack([_read(osp.join(data_root, split, 'semantic', n)) for n in names])
    inst = np.stack([_read(osp.join(data_root, split, 'instance', n)) for n in names]).astype(np.int64)
    multi = np.zeros((num, num_classes), np.float32)
    for i in range(num):
        present = np.unique(sem[i])
        multi[i, present[present > 0] - 1] = 1
    return dict(semantic=torch.from_numpy(sem.astype(np.int64)), instance=torch.from_numpy(inst),
                multilabel=torch.from_numpy(multi), num_classes=torch.tensor(num_classes))


def load_backbone(path: str, profile: Profile) -> torch.nn.Module:
    """The profile's ResNet with an exported (tensor-only) state dict; every key must match."""
    from mmpretrain.registry import MODELS

    from .pretrain import backbone_cfg
    if not osp.isfile(path):
        raise FileNotFoundError(f'backbone checkpoint not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    net = MODELS.build(backbone_cfg(profile))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f'{path} does not fit the profile backbone (ResNet-18, base_channels '
                         f'{profile.base_channels}): missing {missing[:3]}, unexpected {unexpected[:3]}')
    net.eval()  # mmpretrain's ResNet.train() returns None
    return net


def load_images(data_root: str, split: str, start: int, stop: int) -> torch.Tensor:
    """(N, 3, H, W) float32 RGB images ``start..stop-1`` of ``split``, normalised as the pretraining input."""
    imgs = [_read(osp.join(data_root, split, 'images', f'{i:06d}.png'), cv2.IMREAD_COLOR)[..., ::-1]
            for i in range(start, stop)]
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2).float()
    return (x - MEAN) / STD


@torch.no_grad()
def extract(net: torch.nn.Module, data_root: str, split: str, num: int, batch: int = 64,
            desc: str = '') -> torch.Tensor:
    """(N, C, h, w) float32 last-stage features of the first ``num`` images of ``split``."""
    out = []
    for start in tqdm(range(0, num, batch), desc=desc or f'features {split}', leave=False):
        out.append(net(load_images(data_root, split, start, min(num, start + batch)))[-1])
    return torch.cat(out)


def effective_rank(feats: torch.Tensor) -> float:
    """exp of the entropy of the normalised squared singular values of the centred, globally average-pooled
    (N, C, h, w) features: 1 for features on one line, C for isotropic ones (collapse shows as a low rank)."""
    x = feats.double().mean((2, 3))  # [N, C]
    s2 = torch.linalg.svdvals(x - x.mean(0)).pow(2)
    if s2.sum() == 0:
        return 0.0  # constant features
    p = s2 / s2.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
