"""A supervised reference row for a benchmark work dir: how much of the probes' shape is learnable at its budget.

    python tools/analysis/benchmark_ceiling.py [--work-dir work_dirs/benchmark] [--steps N] [--json out.json]

Trains the work dir's backbone (its ``profile.json``: width, strides, image size) from its initialisation on the
benchmark's own training images with their labels - a 1x1 head on the last feature map, per-pixel cross-entropy
against the semantic maps, SGD - for ``--steps`` batches (default: the pretraining steps of one benchmark run),
then scores it with exactly the benchmark's frozen-feature probes. Not a benchmark row (it sees the labels): it
says whether a probe result near chance means "the method learned nothing" or "nothing is learnable here".
"""
import argparse
import contextlib
import io
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Supervised reference row for a benchmark work dir')
    parser.add_argument('--work-dir', default='work_dirs/benchmark', help='a benchmark work dir (profile.json, data/)')
    parser.add_argument('--steps', type=int, help='training batches (default: one pretraining run\'s steps)')
    parser.add_argument('--lr', type=float, default=0.05, help='SGD lr (momentum 0.9, weight decay 1e-4)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the metrics here')
    parser.add_argument('--debug', action='store_true', help='show full tracebacks')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F
    from mmpretrain.registry import MODELS
    from tqdm import tqdm

    import mmdetcon  # noqa: F401  (registers the backbone)
    from mmdetcon.benchmark.benchmark import SPLITS
    from mmdetcon.benchmark.features import extract, load_images, load_labels
    from mmdetcon.benchmark.pretrain import backbone_cfg, iters_per_run
    from mmdetcon.benchmark.probes import run_probes
    from mmdetcon.benchmark.profiles import Profile

    path = osp.join(args.work_dir, 'profile.json')
    if not osp.isfile(path):
        raise UserError(f'{path} not found: run tools/benchmark/run.py there first (it writes the data and profile)')
    with open(path) as f:
        profile = Profile(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(f).items()})
    root, p = osp.join(args.work_dir, 'data'), profile
    steps = iters_per_run(p) if args.steps is None else args.steps
    if steps < 1:
        raise UserError(f'--steps must be >= 1, got {steps}')
    torch.manual_seed(args.seed)
    n = p.train_images
    x_all = load_images(root, 'train', 0, n)
    train = load_labels(root, 'train', n)
    y_all, k = train['semantic'], int(train['num_classes']) + 1

    net = MODELS.build(backbone_cfg(p))
    with contextlib.redirect_stdout(io.StringIO()):  # mmengine lists every initialised parameter
        net.init_weights()
    head = torch.nn.Conv2d(8 * p.base_channels, k, 1)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    start = time.time()
    net.train()
    bar = tqdm(range(steps), desc='supervised', unit='it')
    for _ in bar:
        idx = torch.randint(0, n, (p.batch_size, ))
        logits = head(net(x_all[idx])[-1])
        loss = F.cross_entropy(F.interpolate(logits, size=p.image_size, mode='bilinear', align_corners=False),
                               y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f'{loss.item():.3f}', refresh=False)
    train_s = time.time() - start
    net.eval()
    sizes = (p.probe_images, p.val_images, p.test_images)
    labels = {s: load_labels(root, s, m) for s, m in zip(SPLITS, sizes)}
    feats = {s: extract(net, root, s, m) for s, m in zip(SPLITS, sizes)}
    metrics = run_probes(feats, labels, p.weight_decays, p.probe_iters)
    out = dict(steps=steps, batch_size=p.batch_size, lr=args.lr, seed=args.seed, final_loss=round(loss.item(), 4),
               train_s=round(train_s, 1), metrics=metrics)
    print(f'supervised reference, {steps} steps of {p.batch_size} ({train_s / 60:.1f} min), final loss '
          f'{loss.item():.3f}; test: ' + ', '.join(f'{name} {m["test"]:.1f}' for name, m in metrics.items()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    run_cli(main, parse_args())
