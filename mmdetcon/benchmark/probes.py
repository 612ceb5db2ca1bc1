"""Linear probes on cached frozen features, one fixed protocol for every backbone.

Each probe standardises its inputs with the probe-train statistics, fits a zero-initialised linear head by
full-batch L-BFGS (``iters`` iterations) for each L2 weight decay of the grid, keeps the decay that scores best
on the held-out ``val`` split and reports that head on ``val`` and ``test``. Scores are percentages.

- dense: a 1x1 linear layer on the last feature map, logits bilinearly upsampled; trained on label maps
  area-downsampled to 4x the feature resolution (soft targets), scored by mIoU over background + classes at
  full image resolution;
- object: features average-pooled inside each ground-truth instance mask (area weights on the feature grid),
  top-1 accuracy of the instance's class;
- multilabel: globally pooled features, one sigmoid per class, mAP over classes present in the split.
"""
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Split = Dict[str, Tensor]


def fit_linear(x: Tensor, loss_fn: Callable[[Tensor], Tensor], out_dim: int, weight_decay: float,
               iters: int) -> nn.Linear:
    """Minimise ``loss_fn(head(x)) + weight_decay * |W|^2`` from zero weights with full-batch L-BFGS."""
    head = nn.Linear(x.shape[-1], out_dim)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=iters, history_size=20,
                            line_search_fn='strong_wolfe', tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_fn(head(x)) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head.requires_grad_(False)


def _standardise(train: Tensor, *others: Tensor) -> Tuple[Tensor, ...]:
    """Per-channel (last dim) standardisation with the statistics of ``train``."""
    flat = train.reshape(-1, train.shape[-1])
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    return tuple((t - mean) / std for t in (train, ) + others)


def _select(fit_score: Callable[[float], Tuple[float, float]], weight_decays: Sequence[float]) -> dict:
    """Fit for every decay; keep the best on ``val`` (the first on ties)."""
    best = None
    sweep = {}
    for wd in weight_decays:
        val, test = fit_score(wd)
        sweep[f'{wd:g}'] = round(val, 3)
        if best is None or val > best[1]:
            best = (wd, val, test)
    return dict(wd=best[0], val=round(best[1], 3), test=round(best[2], 3), val_by_wd=sweep)


# ---------------------------------------------------------------------------------------------------------------
# dense
def miou(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Mean IoU (%) over classes that occur in ``target`` or ``pred``."""
    conf = torch.bincount(target.reshape(-1) * num_classes + pred.reshape(-1),
                          minlength=num_classes ** 2).reshape(num_classes, num_classes).double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean() * 100)


def dense_probe(feats: Dict[str, Tensor], labels: Dict[str, Split], weight_decays: Sequence[float],
                iters: int) -> dict:
    """Per-pixel classes (background + K) from the (N, C, h, w) feature maps; mIoU."""
    k = int(labels['train']['num_classes']) + 1
    x_tr, x_va, x_te = _standardise(*(feats[s].permute(0, 2, 3, 1) for s in ('train', 'val', 'test')))
    h = x_tr.shape[1]
    size = min(4 * h, labels['train']['semantic'].shape[-1])
    soft = F.adaptive_avg_pool2d(F.one_hot(labels['train']['semantic'], k).permute(0, 3, 1, 2).float(), size)

    def up(logits: Tensor, out: int) -> Tensor:
        return F.interpolate(logits.permute(0, 3, 1, 2), size=out, mode='bilinear', align_corners=False)

    def loss(logits: Tensor) -> Tensor:
        return -(soft * F.log_softmax(up(logits, size), 1)).sum(1).mean()

    def score(head: nn.Linear, x: Tensor, split: str) -> float:
        sem = labels[split]['semantic']
        pred = torch.cat([up(head(x[i:i + 64]), sem.shape[-1]).argmax(1) for i in range(0, len(x), 64)])
        return miou(pred, sem, k)

    def fit_score(wd: float) -> Tuple[float, float]:
        head = fit_linear(x_tr, loss, k, wd, iters)
        return score(head, x_va, 'val'), score(head, x_te, 'test')

    return _select(fit_score, weight_decays)


# ---------------------------------------------------------------------------------------------------------------
# object
def mask_pooled(feats: Tensor, instance: Tensor, semantic: Tensor) -> Tuple[Tensor, Tensor]:
    """(M, C) features averaged inside each instance mask (weights = mask area per feature cell) and the
    (M,) 0-based class of each instance, over all images."""
    pooled, classes = [], []
    for f, inst, sem in zip(feats, instance, semantic):
        ids = inst.unique()
        ids = ids[ids > 0]
        if not len(ids):
            continue
        masks = (inst[None] == ids[:, None, None]).float()
        w = F.adaptive_avg_pool2d(masks, f.shape[-2:])
        pooled.append(torch.einsum('nhw,chw->nc', w, f) / w.sum((1, 2))[:, None])
        classes.append(torch.stack([sem[inst == i][0] for i in ids]) - 1)
    return torch.cat(pooled), torch.cat(classes)


def object_probe(feats: Dict[str, Tensor], labels: Dict[str, Split], weight_decays: Sequence[float],
                 iters: int) -> dict:
    """Class of each ground-truth instance from its mask-pooled features; top-1 accuracy."""
    k = int(labels['train']['num_classes'])
    pooled = {s: mask_pooled(feats[s], labels[s]['instance'], labels[s]['semantic'])
              for s in ('train', 'val', 'test')}
    x_tr, x_va, x_te = _standardise(*(pooled[s][0] for s in ('train', 'val', 'test')))
    y_tr = pooled['train'][1]

    def fit_score(wd: float) -> Tuple[float, float]:
        head = fit_linear(x_tr, lambda z: F.cross_entropy(z, y_tr), k, wd, iters)
        return tuple(float((head(x).argmax(1) == pooled[s][1]).float().mean() * 100)
                     for x, s in ((x_va, 'val'), (x_te, 'test')))

    return _select(fit_score, weight_decays)


# ---------------------------------------------------------------------------------------------------------------
# multi-label
def mean_ap(scores: Tensor, target: Tensor) -> float:
    """mAP (%) over the classes with at least one positive (mmpretrain's AveragePrecision per class)."""
    from mmpretrain.evaluation.metrics import AveragePrecision
    present = target.sum(0) > 0
    return float(AveragePrecision.calculate(scores[:, present], target[:, present].long(), average='macro'))


def multilabel_probe(feats: Dict[str, Tensor], labels: Dict[str, Split], weight_decays: Sequence[float],
                     iters: int) -> dict:
    """Which classes an image contains, from globally pooled features; mAP."""
    k = int(labels['train']['num_classes'])
    x_tr, x_va, x_te = _standardise(*(feats[s].mean((2, 3)) for s in ('train', 'val', 'test')))
    y_tr = labels['train']['multilabel']

    def fit_score(wd: float) -> Tuple[float, float]:
        head = fit_linear(x_tr, lambda z: F.binary_cross_entropy_with_logits(z, y_tr), k, wd, iters)
        return mean_ap(head(x_va), labels['val']['multilabel']), mean_ap(head(x_te), labels['test']['multilabel'])

    return _select(fit_score, weight_decays)


def chance_levels(labels: Split) -> Dict[str, float]:
    """Scores of label-blind predictors on a split: the most frequent class everywhere (dense, object) and
    constant scores (multi-label AP = positive rate)."""
    sem = labels['semantic']
    k = int(labels['num_classes']) + 1
    dense = miou(torch.full_like(sem, int(torch.bincount(sem.reshape(-1)).argmax())), sem, k)
    _, classes = mask_pooled(torch.zeros(len(sem), 1, 1, 1), labels['instance'], sem)
    multi = labels['multilabel']
    prevalence = multi.mean(0)[multi.sum(0) > 0]
    top = torch.bincount(classes).max().item() / len(classes)
    return dict(dense_miou=round(dense, 3), object_top1=round(100 * top, 3),
                multilabel_map=round(float(prevalence.mean() * 100), 3))


PROBES: Dict[str, Callable] = dict(dense_miou=dense_probe, object_top1=object_probe, multilabel_map=multilabel_probe)


def run_probes(feats: Dict[str, Tensor], labels: Dict[str, Split], weight_decays: Sequence[float],
               iters: int) -> Dict[str, dict]:
    """Every probe on one backbone's cached features (splits ``train``, ``val``, ``test``)."""
    return {name: probe(feats, labels, weight_decays, iters) for name, probe in PROBES.items()}
