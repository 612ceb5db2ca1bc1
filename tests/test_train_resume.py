"""Demo configs train through tools/train.py, resume from their own checkpoints on torch >= 2.6, and run
multi-process over gloo through tools/dist_train.sh."""
import glob
import os.path as osp

import pytest

from conftest import ROOT, free_port, run_tool, tool_env

DEMOS = {
    'byol': 'configs/baselines/byol_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'mocov2': 'configs/baselines/mocov2_resnet18_1xb32-coslr-5e_shapes.py',
    'simclr': 'configs/baselines/simclr_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'densecl': 'configs/baselines/densecl_resnet18_1xb32-coslr-5e_shapes.py',
    'detcon-b': 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'detcon-s': 'configs/detcon/detcon-s_resnet18_1xb32-lars-coslr-5e_shapes.py',
    'detco': 'configs/detco/detco_resnet18_1xb32-coslr-5e_shapes.py',
}


def small(shapes_root: str, epochs: int, batch: int = 4) -> list:
    """Options that shrink a demo to 16 images of the session's shapes set, ``16 / batch`` iterations an epoch."""
    return ['--no-persistent-workers', '--cfg-options', f'train_cfg.max_epochs={epochs}',
            f'train_dataloader.dataset.data_root={shapes_root}', 'train_dataloader.dataset.num_images=16',
            f'train_dataloader.batch_size={batch}', 'train_dataloader.num_workers=0',
            'default_hooks.logger.interval=1']


def test_demo_configs_exist():
    for path in DEMOS.values():
        assert osp.isfile(osp.join(ROOT, path)), path


@pytest.mark.parametrize('name', ['byol', 'detcon-b', 'detco'])
def test_train_then_resume(name, shapes_root, tmp_path):
    work = str(tmp_path / name)
    first = run_tool(['tools/train.py', DEMOS[name], '--work-dir', work] + small(shapes_root, 1))
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), first.stdout[-2000:]
    assert osp.isfile(osp.join(work, '.mmdetcon_trusted.json'))
    second = run_tool(['tools/train.py', DEMOS[name], '--work-dir', work, '--resume'] + small(shapes_root, 2))
    log = second.stdout + second.stderr
    assert 'resumed epoch: 1, iter: 4' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    # The resumed run continued the iteration count instead of starting over.
    assert 'Epoch(train) [2][4/4]' in log, log[-3000:]


@pytest.mark.parametrize('name', ['mocov2', 'simclr', 'densecl', 'detcon-s'])
def test_demo_trains(name, shapes_root, tmp_path):
    work = str(tmp_path / name)
    proc = run_tool(['tools/train.py', DEMOS[name], '--work-dir', work] + small(shapes_root, 1))
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), proc.stdout[-2000:]
    assert 'nan' not in ' '.join(l for l in (proc.stdout + proc.stderr).splitlines() if 'loss' in l).lower()


def test_dist_train_two_processes_gloo(shapes_root, tmp_path):
    work = str(tmp_path / 'dist')
    env = tool_env(PYTHON=__import__('sys').executable, PORT=str(free_port()))
    proc = run_tool(['tools/dist_train.sh', DEMOS['detcon-b'], '2', '--work-dir', work]
                    + small(shapes_root, 1, batch=2), env=env)
    log = proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), log[-3000:]
    # 16 images over 2 processes x 2 per process: 4 iterations an epoch.
    assert 'Epoch(train) [1][4/4]' in log, log[-3000:]
    logs = glob.glob(osp.join(work, '*', '*.log'))
    assert logs and 'Distributed training: True' in open(logs[0]).read()
