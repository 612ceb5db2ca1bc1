"""DetCon's mask path: id map -> hard partition of the feature grid -> sampled ids -> pooled features.

1. :func:`downsample_masks`: every feature cell belongs to the id covering most of its pixels
   (ties to the lowest id), i.e. average-pool of the one-hot map followed by argmax, computed from
   counts without materialising one-hot maps. Ids that win no cell disappear.
2. :func:`sample_mask_ids`: R ids per image, uniform over the ids present on the grid (not weighted
   by area), with replacement, independently at every call (one call per view; the online and the
   target network reuse the draw).
3. :func:`pool_masks`: mean feature over the cells of each sampled id.
"""
from typing import Optional, Tuple

import torch

# Largest B*cells*(max id + 1) for which per-cell counts are kept as one dense table; above it the
# counts are computed sparsely over the (cell, id) pairs that occur.
_DENSE_COUNT_LIMIT = 1 << 22


def downsample_masks(id_map: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """Assign each cell of an (h, w) grid its plurality id.

    Args:
        id_map: [B, H, W] non-negative integer ids; H and W must be multiples of h and w.
        grid: (h, w) feature grid size.

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
    ids = id_map.long()
    if ids.numel() and ids.min() < 0:
        raise ValueError(f'downsample_masks: ids must be non-negative, got min {int(ids.min())}')
    sy, sx = H // h, W // w
    dev = ids.device
    cell = (torch.arange(H, device=dev) // sy)[:, None] * w + torch.arange(W, device=dev) // sx
    cell = (cell + h * w * torch.arange(B, device=dev)[:, None, None]).flatten()  # [B*H*W]
    ids = ids.flatten()
    num_ids = int(ids.max()) + 1 if ids.numel() else 1
    num_cells = B * h * w
    if num_cells * num_ids <= _DENSE_COUNT_LIMIT:
        counts = torch.bincount(cell * num_ids + ids, minlength=num_cells * num_ids)
        # argmax returns the first maximum, i.e. the lowest id on ties.
        return counts.view(B, h * w, num_ids).argmax(-1)
    if max(num_cells, sy * sx + 1) * num_ids >= 1 << 62:
        raise ValueError(f'downsample_masks: ids up to {num_ids - 1} are too large to count')
    # Sparse: count each occurring (cell, id) pair, then keep per cell the largest count and, among
    # equal counts, the lowest id, by maximising count * num_ids + (num_ids - 1 - id).
    pairs, counts = torch.unique(cell * num_ids + ids, return_counts=True)
    pair_cell, pair_id = pairs // num_ids, pairs % num_ids
    score = counts * num_ids + (num_ids - 1 - pair_id)
    best = torch.full((num_cells, ), -1, dtype=torch.long, device=dev)
    best.scatter_reduce_(0, pair_cell, score, reduce='amax')
    return (num_ids - 1 - best % num_ids).view(B, h * w)


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
