"""DetCon's mask path: id map -> hard partition of the feature grid -> sampled ids -> pooled features.

1. :func:`downsample_masks`: every feature cell belongs to the id covering most of its pixels
   (ties to the lowest id), i.e. average-pool of the one-hot map followed by argmax, computed from
   counts without materialising one-hot maps. Ids that win no cell disappear.
2. :func:`sample_mask_ids`: R ids per image, uniform over the ids present on the grid (not weighted
   by area), with replacement, independently at every call (one call per view; the online and the
   target network reuse the draw).
3. :func:`pool_masks`: mean feature over the cells of each sampled id.

All three have static shapes and no host synchronisation (no data-dependent Python branch, no
``.item()``), so the path compiles with ``torch.compile(fullgraph=True)``: the range of the ids is a
configuration value (``num_ids``, DetCon's M, checked by ``MultiViewWithMask(num_mask_ids=M)`` where
the ids are made), never read from the data.
"""
from typing import Optional, Tuple

import torch

#: Default M, the number of mask ids per image (ids 0..M-1): the whole uint16 range, i.e. every id
#: a mask PNG can hold (``mmdetcon.utils.masks_io`` stores uint8, or uint16 above 255 segments;
#: ids never wrap). The official code wraps ids into 256.
NUM_MASK_IDS = 1 << 16

# Largest B*cells*(M + 1) for which per-cell counts are kept as one dense table; above it (and when
# M is not given) the per-cell vote sorts the ids of each cell instead. Both are static in shape.
_DENSE_COUNT_LIMIT = 1 << 22


def downsample_masks(id_map: torch.Tensor, grid: Tuple[int, int],
                     num_ids: Optional[int] = None) -> torch.Tensor:
    """Assign each cell of an (h, w) grid its plurality id (ties to the lowest id).

    Args:
        id_map: [B, H, W] integer ids; H and W must be multiples of h and w.
        grid: (h, w) feature grid size.
        num_ids: M. Ids outside [0, M) (negative, or an "ignore" value a validated pipeline never
            lets through) are counted as one spare segment with id M, by arithmetic (no check).
            None: every integer is an id, negative ones included.

    Returns:
        [B, h*w] int64 cell ids (row-major cells).
    """
    if id_map.dim() != 3:
        raise ValueError(f'downsample_masks expects an id map [B, H, W], got {tuple(id_map.shape)}')
    if id_map.is_floating_point() or id_map.is_complex() or id_map.dtype == torch.bool:
        raise ValueError(f'downsample_masks expects integer ids, got {id_map.dtype}')
    B, H, W = id_map.shape
    h, w = grid
    if h <= 0 or w <= 0 or H % h or W % w:
        raise ValueError(f'mask of size {H}x{W} is not divisible into the {h}x{w} feature grid; '
                         'crop/resize the views to a multiple of the backbone stride')
    if num_ids is not None and num_ids < 1:
        raise ValueError(f'downsample_masks: num_ids must be >= 1, got {num_ids}')
    ids = id_map.long()
    if num_ids is not None:
        ids = torch.where((ids >= 0) & (ids < num_ids), ids, num_ids)  # spare slot M
    sy, sx = H // h, W // w
    num_cells = B * h * w
    if num_ids is not None and num_cells * (num_ids + 1) <= _DENSE_COUNT_LIMIT:
        slots = num_ids + 1
        dev = ids.device
        cell = (torch.arange(H, device=dev) // sy)[:, None] * w + torch.arange(W, device=dev) // sx
        cell = cell + h * w * torch.arange(B, device=dev)[:, None, None]  # [B,H,W]
        counts = torch.zeros(num_cells * slots, dtype=torch.int32, device=dev)
        index = (cell * slots + ids).flatten()
        counts.scatter_add_(0, index, torch.ones((), dtype=torch.int32, device=dev).expand_as(index))
        # argmax returns the first maximum, i.e. the lowest id on ties.
        return counts.view(B, h * w, slots).argmax(-1)
    # Per cell: sort its sy*sx ids; the plurality id ends the first longest run of equal values
    # (the runs are in increasing id order, so the first one of maximal length has the lowest id).
    vals = ids.view(B, h, sy, w, sx).permute(0, 1, 3, 2, 4).reshape(num_cells, sy * sx)
    vals = vals.sort(dim=1).values
    pos = torch.arange(sy * sx, device=ids.device).expand_as(vals)
    starts = torch.ones_like(vals, dtype=torch.bool)
    starts[:, 1:] = vals[:, 1:] != vals[:, :-1]
    run_start = torch.where(starts, pos, 0).cummax(dim=1).values
    last = (pos - run_start).argmax(dim=1, keepdim=True)  # first position of the longest run's end
    return vals.gather(1, last).view(B, h * w)


def sample_mask_ids(cell_ids: torch.Tensor, num_samples: int = 16,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Draw ``num_samples`` ids per image uniformly, with replacement, among the ids present in
    ``cell_ids`` [B, G]; returns [B, num_samples] int64."""
    if cell_ids.dim() != 2 or cell_ids.shape[1] == 0:
        raise ValueError(f'sample_mask_ids expects cell ids [B, G], got {tuple(cell_ids.shape)}')
    if num_samples < 1:
        raise ValueError(f'sample_mask_ids: num_samples must be >= 1, got {num_samples}')
    sorted_ids = cell_ids.sort(dim=1).values
    first = torch.ones_like(sorted_ids, dtype=torch.bool)  # first occurrence of each distinct id
    first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    pick = torch.multinomial(first.float(), num_samples, replacement=True, generator=generator)
    return sorted_ids.gather(1, pick)


def pool_masks(features: torch.Tensor, cell_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean of ``features`` [B, C, h, w] over the cells whose id in ``cell_ids`` [B, h*w] equals
    each sampled id in ``ids`` [B, R]; returns [B, R, C] (zeros for an id owning no cell)."""
    B, C = features.shape[:2]
    if cell_ids.shape != (B, features[0, 0].numel()) or ids.dim() != 2 or ids.shape[0] != B:
        raise ValueError(f'pool_masks: features {tuple(features.shape)}, cell ids '
                         f'{tuple(cell_ids.shape)} and ids {tuple(ids.shape)} do not match')
    masks = (ids[:, :, None] == cell_ids[:, None, :]).to(features.dtype)  # [B,R,G]
    masks = masks / masks.sum(-1, keepdim=True).clamp(min=1)
    return torch.einsum('brg,bcg->brc', masks, features.flatten(2))
