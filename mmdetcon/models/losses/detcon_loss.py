"""DetCon contrastive detection loss (DetCon-B ``byol_nce_detcon`` and its SimCLR form, DetCon-S).

Each query is a (view, sampled mask) row of a local image. Its keys are the target vectors of both
views of every image in the global batch (2*N*R logits). Positives are the other view's rows of the
same image with the same mask id; same-view rows of the same image with the same id (the query's
own copy and its duplicates) are excluded from the softmax. A row with several positives gets the
label 1/|P| on each; a row is weighted by 1/(number of same-view duplicates of its id), and rows
without any positive get weight 0 while staying negatives for every other query. Each direction is
the weighted mean over all B*R rows and the two directions are summed.

Only the logits [B*R, 2*N*R] are dense, and they are never stored: positives and exclusions can
only sit in the local image's two R x R blocks, so the positive logits are an [B, R, R] product and
the exclusions are written, by gather / scatter arithmetic, into row chunks of the logits inside a
custom autograd function that reduces each chunk to its log-sum-exp and recomputes it in backward.
Peak memory is one chunk (at most ``_CHUNK_ELEMENTS`` logits unless ``chunk_rows`` says so)
instead of several full logits tensors; nothing reads a value back to the host and every shape is
static, so the loss compiles with ``torch.compile(fullgraph=True)``. The two directions are
computed one after the other, in float32 (float64 inputs stay float64) even under autocast.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.dist import get_rank

from mmdetcon.registry import MODELS
from ..utils.gather import concat_all_gather, gather_with_grad

# Value written into excluded logits: finite so that a row whose every key is excluded stays
# finite (it then has no positive either and weight 0).
_EXCLUDED = -1e9
# Default chunk of the logits, in elements (64 MiB in float32): at DetCon's 2*N*R = 131072 keys per
# query (N = 4096) that is 128 query rows per chunk.
_CHUNK_ELEMENTS = 2**24


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dim with the eps on the squared norm: x * rsqrt(max(sum x^2, 1e-12))."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True).clamp(min=1e-12))


def _check_inputs(preds: Tuple[torch.Tensor, ...], targets: Tuple[torch.Tensor, ...],
                  ids: Tuple[torch.Tensor, ...], temperature: float,
                  chunk_rows: Optional[int] = None) -> None:
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
    if chunk_rows is not None and not (isinstance(chunk_rows, int) and chunk_rows >= 1):
        raise ValueError(f'DetCon loss: chunk_rows must be a positive int or None, '
                         f'got {chunk_rows!r}')


def _masked_logits(query: torch.Tensor, keys: torch.Tensor, cols: torch.Tensor,
                   drop: torch.Tensor) -> torch.Tensor:
    """Logits [c, K] of query rows [c, D] against keys [K, D], with the columns ``cols`` [c, C]
    of each row set to ``_EXCLUDED`` where ``drop`` [c, C] is true (by arithmetic on gathered
    values, so no data-dependent shape)."""
    logits = query @ keys.t()  # [c, K]
    local = logits.gather(1, cols)  # [c, C]
    return logits.scatter_(1, cols, local.masked_fill(drop, _EXCLUDED))


def _chunks(rows: int, chunk_rows: int) -> List[Tuple[int, int]]:
    return [(start, min(start + chunk_rows, rows)) for start in range(0, rows, chunk_rows)]


class _MaskedRowLogSumExp(torch.autograd.Function):
    """lse[i] = log sum_j exp(<query[i], keys[j]>) over the keys j not dropped for row i.

    Drops are confined to the few columns ``cols[i]`` of each row. Forward and backward go over
    row chunks and never keep the [M, K] logits: forward reduces each chunk in place, backward
    recomputes the chunk and turns it into the softmax in place, so the memory is one chunk of
    logits (plus the small inputs and gradients) instead of the several [M, K] tensors that
    autograd through ``logsumexp`` would hold.
    """

    @staticmethod
    def forward(ctx, query: torch.Tensor, keys: torch.Tensor, cols: torch.Tensor,
                drop: torch.Tensor, chunk_rows: int) -> torch.Tensor:
        # query [M, D], keys [K, D], cols / drop [M, C] -> lse [M]
        out = []
        for start, stop in _chunks(query.shape[0], chunk_rows):
            logits = _masked_logits(query[start:stop], keys, cols[start:stop], drop[start:stop])
            row_max = logits.amax(dim=1, keepdim=True)  # [c, 1]
            out.append(row_max.squeeze(1) + logits.sub_(row_max).exp_().sum(dim=1).log())
            del logits  # before the next chunk is allocated
        lse = torch.cat(out)
        ctx.save_for_backward(query, keys, cols, drop, lse)
        ctx.chunk_rows = chunk_rows
        return lse

    @staticmethod
    def backward(ctx, grad_lse: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        query, keys, cols, drop, lse = ctx.saved_tensors
        need_query, need_keys = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_query = [] if need_query else None
        grad_keys = torch.zeros_like(keys) if need_keys else None
        for start, stop in _chunks(query.shape[0], ctx.chunk_rows):
            q, c, d = query[start:stop], cols[start:stop], drop[start:stop]
            prob = _masked_logits(q, keys, c, d).sub_(lse[start:stop, None]).exp_()  # [c, K]
            # Excluded logits are constants: no gradient (matters only for a row whose every key
            # is excluded, where the softmax is uniform over them).
            prob = prob.scatter_(1, c, prob.gather(1, c).masked_fill(d, 0.))
            grad_logits = prob.mul_(grad_lse[start:stop, None])  # [c, K]
            if grad_query is not None:
                grad_query.append(grad_logits @ keys)  # [c, D]
            if grad_keys is not None:
                grad_keys.addmm_(grad_logits.t(), q)  # [K, D]
            del prob, grad_logits  # before the next chunk is allocated
        return (torch.cat(grad_query) if grad_query is not None else None, grad_keys, None, None,
                None)


def _auto_chunk_rows(num_keys: int) -> int:
    return max(1, _CHUNK_ELEMENTS // num_keys)


def _direction(query: torch.Tensor, keys: torch.Tensor, other: int, ids_query: torch.Tensor,
               ids_other: torch.Tensor, offset: int, temperature: float, local_negatives: bool,
               chunk_rows: Optional[int]) -> torch.Tensor:
    """L_{v->v'} for normalised queries [B,R,D] of view v against the normalised keys [2,N,R,D]
    of views 1 and 2; ``other`` is the index of v' in ``keys`` (both directions share ``keys``).

    ``offset`` is the global index of local image 0 (rank * B).
    """
    B, R, D = query.shape
    N = keys.shape[1]
    flat_keys = keys.reshape(2 * N * R, D)  # [2*N*R, D], a view
    q = query.reshape(B * R, D) / temperature  # [B*R, D]

    pos = ids_query[:, :, None] == ids_other[:, None, :]  # [B,R,R] other-view block
    excl = ids_query[:, :, None] == ids_query[:, None, :]  # [B,R,R] same-view block
    # Column of key j of local image b in view 1's half of flat_keys; view 2's half is + N*R.
    local_col = (offset + torch.arange(B, device=query.device))[:, None] * R + torch.arange(
        R, device=query.device)  # [B,R]
    cols_local = local_col[:, None, :].expand(B, R, R)  # [B,R,R]
    cols = torch.cat([cols_local + other * N * R, cols_local + (1 - other) * N * R],
                     dim=2).reshape(B * R, 2 * R)  # [B*R, 2R]: other-view block, same-view block
    drop_other = torch.zeros_like(pos) if local_negatives else ~pos
    drop_same = excl if local_negatives else torch.ones_like(excl)
    drop = torch.cat([drop_other, drop_same], dim=2).reshape(B * R, 2 * R)
    rows = chunk_rows if chunk_rows is not None else _auto_chunk_rows(2 * N * R)
    log_norm = _MaskedRowLogSumExp.apply(q, flat_keys, cols, drop, rows).view(B, R, 1)  # [B,R,1]

    # Positives are never dropped: their logits against the local image's other-view keys.
    local_other = keys[other, offset:offset + B]  # [B,R,D]
    pos_logits = torch.einsum('brd,bjd->brj', q.view(B, R, D), local_other)  # [B,R,R]
    log_prob = torch.where(pos, pos_logits - log_norm, torch.zeros_like(pos_logits))
    num_pos = pos.sum(-1)  # [B,R]
    row_loss = -log_prob.sum(-1) / num_pos.clamp(min=1)
    weight = (num_pos > 0).to(row_loss.dtype) / excl.sum(-1).to(row_loss.dtype)
    return (weight * row_loss).sum() / (B * R)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def detcon_loss(pred1: torch.Tensor, pred2: torch.Tensor, target1: torch.Tensor,
                target2: torch.Tensor, ids1: torch.Tensor, ids2: torch.Tensor, *,
                temperature: float = 0.1, local_negatives: bool = True,
                chunk_rows: Optional[int] = None) -> torch.Tensor:
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
        chunk_rows: query rows per chunk of logits; None picks ``_CHUNK_ELEMENTS // (2*N*R)``.
            Only memory and speed depend on it.
    """
    _check_inputs((pred1, pred2), (target1, target2), (ids1, ids2), temperature, chunk_rows)
    dtype = _compute_dtype(pred1)
    with torch.autocast(device_type=pred1.device.type, enabled=False):
        q1, q2 = (_normalize(p.to(dtype)) for p in (pred1, pred2))
        keys = torch.stack([concat_all_gather(_normalize(t.detach().to(dtype)))
                            for t in (target1, target2)])  # [2,N,R,D]
        offset = get_rank() * pred1.shape[0]
        return (_direction(q1, keys, 1, ids1, ids2, offset, temperature, local_negatives,
                           chunk_rows) +
                _direction(q2, keys, 0, ids2, ids1, offset, temperature, local_negatives,
                           chunk_rows))


def detcon_s_loss(proj1: torch.Tensor, proj2: torch.Tensor, ids1: torch.Tensor, ids2: torch.Tensor,
                  *, temperature: float = 0.1, local_negatives: bool = True,
                  chunk_rows: Optional[int] = None) -> torch.Tensor:
    """DetCon-S (SimCLR form): :func:`detcon_loss` with predictions = targets = ``proj1``/``proj2``
    [B, R, D]. The keys keep their gradient and are gathered with :func:`gather_with_grad`, so the
    gradient reaches the keys of every rank; the query's own vector is excluded (as in NT-Xent)."""
    _check_inputs((proj1, proj2), (proj1, proj2), (ids1, ids2), temperature, chunk_rows)
    dtype = _compute_dtype(proj1)
    with torch.autocast(device_type=proj1.device.type, enabled=False):
        z1, z2 = (_normalize(z.to(dtype)) for z in (proj1, proj2))
        keys = torch.stack([gather_with_grad(z1), gather_with_grad(z2)])  # [2,N,R,D]
        offset = get_rank() * proj1.shape[0]
        return (_direction(z1, keys, 1, ids1, ids2, offset, temperature, local_negatives,
                           chunk_rows) +
                _direction(z2, keys, 0, ids2, ids1, offset, temperature, local_negatives,
                           chunk_rows))


@MODELS.register_module()
class DetConLoss(nn.Module):
    """DetCon contrastive detection loss.

    Args:
        temperature: softmax temperature tau (0.1 in DetCon).
        local_negatives: keep the other masks of the same image as negatives.
        simclr: DetCon-S form: ``forward(proj1, proj2, ids1, ids2)`` with gradients through the
            keys; otherwise DetCon-B: ``forward(pred1, pred2, target1, target2, ids1, ids2)``.
        chunk_rows: query rows per chunk of logits (None: automatic); memory / speed only.
    """

    def __init__(self, temperature: float = 0.1, local_negatives: bool = True,
                 simclr: bool = False, chunk_rows: Optional[int] = None) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f'DetConLoss: temperature must be > 0, got {temperature}')
        if chunk_rows is not None and not (isinstance(chunk_rows, int) and chunk_rows >= 1):
            raise ValueError(f'DetConLoss: chunk_rows must be a positive int or None, '
                             f'got {chunk_rows!r}')
        self.temperature = temperature
        self.local_negatives = local_negatives
        self.simclr = simclr
        self.chunk_rows = chunk_rows

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        expected = 4 if self.simclr else 6
        if len(tensors) != expected:
            raise TypeError(f'DetConLoss(simclr={self.simclr}) takes {expected} tensors, '
                            f'got {len(tensors)}')
        fn = detcon_s_loss if self.simclr else detcon_loss
        return fn(*tensors, temperature=self.temperature, local_negatives=self.local_negatives,
                  chunk_rows=self.chunk_rows)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, local_negatives={self.local_negatives}, '
                f'simclr={self.simclr}, chunk_rows={self.chunk_rows}')
