"""DetCon contrastive detection loss (DetCon-B ``byol_nce_detcon`` and its SimCLR form, DetCon-S).

Each query is a (view, sampled mask) row of a local image. Its keys are the target vectors of both
views of every image in the global batch (2*N*R logits). Positives are the other view's rows of the
same image with the same mask id; same-view rows of the same image with the same id (the query's
own copy and its duplicates) are excluded from the softmax. A row with several positives gets the
label 1/|P| on each; a row is weighted by 1/(number of same-view duplicates of its id), and rows
without any positive get weight 0 while staying negatives for every other query. Each direction is
the weighted mean over all B*R rows and the two directions are summed.

Only the logits [B*R, 2*N*R] are dense: positives and exclusions can only sit in the local image's
two R x R blocks, so they are handled by index. The two directions are computed one after the
other, in float32 (float64 inputs stay float64) even under autocast.
"""
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.dist import get_rank

from mmdetcon.registry import MODELS
from ..utils.gather import concat_all_gather, gather_with_grad

# Value written into excluded logits: finite so that a row whose every key is excluded stays
# finite (it then has no positive either and weight 0).
_EXCLUDED = -1e9


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dim with the eps on the squared norm: x * rsqrt(max(sum x^2, 1e-12))."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True).clamp(min=1e-12))


def _check_inputs(preds: Tuple[torch.Tensor, ...], targets: Tuple[torch.Tensor, ...],
                  ids: Tuple[torch.Tensor, ...], temperature: float) -> None:
    shape = preds[0].shape
    if len(shape) != 3 or 0 in shape:
        raise ValueError(f'DetCon loss expects non-empty [B, R, D] predictions, got {tuple(shape)}')
    for name, t in [('pred2', preds[1]), ('target1', targets[0]), ('target2', targets[1])]:
        if t.shape != shape:
            raise ValueError(f'DetCon loss: {name} has shape {tuple(t.shape)}, '
                             f'expected {tuple(shape)} like pred1')
    for name, t in [('ids1', ids[0]), ('ids2', ids[1])]:
        if t.shape != shape[:2]:
            raise ValueError(f'DetCon loss: {name} has shape {tuple(t.shape)}, '
                             f'expected [B, R] = {tuple(shape[:2])}')
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f'DetCon loss: {name} must be an integer tensor, got {t.dtype}')
    if not temperature > 0:
        raise ValueError(f'DetCon loss: temperature must be > 0, got {temperature}')


def _direction(query: torch.Tensor, keys_other: torch.Tensor, keys_same: torch.Tensor,
               ids_query: torch.Tensor, ids_other: torch.Tensor, offset: int,
               temperature: float, local_negatives: bool) -> torch.Tensor:
    """L_{v->v'} for normalised queries [B,R,D] against normalised keys [N,R,D] of both views.

    ``offset`` is the global index of local image 0 (rank * B).
    """
    B, R, D = query.shape
    N = keys_other.shape[0]
    keys = torch.cat([keys_other, keys_same]).reshape(2 * N * R, D)
    logits = (query.reshape(B * R, D) / temperature) @ keys.t()  # [B*R, 2*N*R]

    pos = ids_query[:, :, None] == ids_other[:, None, :]  # [B,R,R] other-view block
    excl = ids_query[:, :, None] == ids_query[:, None, :]  # [B,R,R] same-view block
    # Column of key j of local image b in the other-view / same-view half.
    local_col = (offset + torch.arange(B, device=query.device))[:, None] * R + torch.arange(
        R, device=query.device)  # [B,R]
    cols_other = local_col[:, None, :].expand(B, R, R)  # [B,R,R]
    cols_same = cols_other + N * R
    rows = torch.arange(B * R, device=query.device).view(B, R, 1).expand(B, R, R)
    drop_same = excl if local_negatives else torch.ones_like(excl)
    drop = [(rows[drop_same], cols_same[drop_same])]
    if not local_negatives:
        drop.append((rows[~pos], cols_other[~pos]))
    for r, c in drop:
        logits.index_put_((r, c), logits.new_tensor(_EXCLUDED))

    log_norm = torch.logsumexp(logits, dim=1).view(B, R, 1)
    pos_logits = logits.gather(1, cols_other.reshape(B * R, R)).view(B, R, R)
    log_prob = torch.where(pos, pos_logits - log_norm, torch.zeros_like(pos_logits))
    num_pos = pos.sum(-1)  # [B,R]
    row_loss = -log_prob.sum(-1) / num_pos.clamp(min=1)
    weight = (num_pos > 0).to(row_loss.dtype) / excl.sum(-1).to(row_loss.dtype)
    return (weight * row_loss).sum() / (B * R)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def detcon_loss(pred1: torch.Tensor, pred2: torch.Tensor, target1: torch.Tensor,
                target2: torch.Tensor, ids1: torch.Tensor, ids2: torch.Tensor, *,
                temperature: float = 0.1, local_negatives: bool = True) -> torch.Tensor:
    """DetCon-B loss L(1->2) + L(2->1); returns a scalar.

    Args:
        pred1, pred2: online predictions of view 1 / 2, [B, R, D].
        target1, target2: target projections, [B, R, D]; detached here and all-gathered over
            ranks (no gradient), so the mean of the rank losses equals the loss of the
            concatenated batch.
        ids1, ids2: mask ids of the sampled rows, [B, R], integers; local, never gathered.
        temperature: softmax temperature tau.
        local_negatives: keep the other masks of the same image as negatives (default). False
            removes every same-image key that is not a positive.
    """
    _check_inputs((pred1, pred2), (target1, target2), (ids1, ids2), temperature)
    dtype = _compute_dtype(pred1)
    with torch.autocast(device_type=pred1.device.type, enabled=False):
        q1, q2 = (_normalize(p.to(dtype)) for p in (pred1, pred2))
        k1, k2 = (concat_all_gather(_normalize(t.detach().to(dtype))) for t in (target1, target2))
        offset = get_rank() * pred1.shape[0]
        return (_direction(q1, k2, k1, ids1, ids2, offset, temperature, local_negatives) +
                _direction(q2, k1, k2, ids2, ids1, offset, temperature, local_negatives))


def detcon_s_loss(proj1: torch.Tensor, proj2: torch.Tensor, ids1: torch.Tensor, ids2: torch.Tensor,
                  *, temperature: float = 0.1, local_negatives: bool = True) -> torch.Tensor:
    """DetCon-S (SimCLR form): :func:`detcon_loss` with predictions = targets = ``proj1``/``proj2``
    [B, R, D]. The keys keep their gradient and are gathered with :func:`gather_with_grad`, so the
    gradient reaches the keys of every rank; the query's own vector is excluded (as in NT-Xent)."""
    _check_inputs((proj1, proj2), (proj1, proj2), (ids1, ids2), temperature)
    dtype = _compute_dtype(proj1)
    with torch.autocast(device_type=proj1.device.type, enabled=False):
        z1, z2 = (_normalize(z.to(dtype)) for z in (proj1, proj2))
        k1, k2 = gather_with_grad(z1), gather_with_grad(z2)
        offset = get_rank() * proj1.shape[0]
        return (_direction(z1, k2, k1, ids1, ids2, offset, temperature, local_negatives) +
                _direction(z2, k1, k2, ids2, ids1, offset, temperature, local_negatives))


@MODELS.register_module()
class DetConLoss(nn.Module):
    """DetCon contrastive detection loss.

    Args:
        temperature: softmax temperature tau (0.1 in DetCon).
        local_negatives: keep the other masks of the same image as negatives.
        simclr: DetCon-S form: ``forward(proj1, proj2, ids1, ids2)`` with gradients through the
            keys; otherwise DetCon-B: ``forward(pred1, pred2, target1, target2, ids1, ids2)``.
    """

    def __init__(self, temperature: float = 0.1, local_negatives: bool = True,
                 simclr: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f'DetConLoss: temperature must be > 0, got {temperature}')
        self.temperature = temperature
        self.local_negatives = local_negatives
        self.simclr = simclr

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        expected = 4 if self.simclr else 6
        if len(tensors) != expected:
            raise TypeError(f'DetConLoss(simclr={self.simclr}) takes {expected} tensors, '
                            f'got {len(tensors)}')
        fn = detcon_s_loss if self.simclr else detcon_loss
        return fn(*tensors, temperature=self.temperature, local_negatives=self.local_negatives)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, local_negatives={self.local_negatives}, '
                f'simclr={self.simclr}')
