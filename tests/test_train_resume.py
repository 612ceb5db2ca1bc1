"""Demo configs train through tools/train.py, resume from their own checkpoints on any machine (torch >= 2.6,
no key), continue exactly after a SIGKILL, and run multi-process over gloo through tools/dist_train.sh."""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port, run_tool, tool_env
from mmdetcon.utils.logs import logged_scalars

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


def test_resume_with_another_home(shapes_root, tmp_path):
    """A checkpoint written with one HOME resumes with another (new container, other user): no key."""
    work = str(tmp_path / 'byol')
    (tmp_path / 'home_a').mkdir()
    (tmp_path / 'home_b').mkdir()
    cmd = ['tools/train.py', DEMOS['byol'], '--work-dir', work]
    run_tool(cmd + small(shapes_root, 1), env=tool_env(HOME=str(tmp_path / 'home_a')))
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    second = run_tool(cmd + ['--resume'] + small(shapes_root, 2), env=tool_env(HOME=str(tmp_path / 'home_b')))
    log = second.stdout + second.stderr
    assert 'resumed epoch: 1, iter: 4' in log, log[-3000:]
    assert 'Epoch(train) [2][4/4]' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


def _scalars(work: str) -> dict:
    """step -> logged values, over every run in ``work`` (a later run overrides an earlier one)."""
    return {row['step']: row for row in logged_scalars(work)}


def _losses(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ('time', 'data_time', 'epoch', 'iter', 'step')}


def _descendants(pid: int) -> list:
    """``pid`` and every process below it (torchrun starts its workers in sessions of their own)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def _train_until_killed(cmd: list, env: dict, marker: str, timeout: float = 300) -> str:
    """Run ``cmd``; SIGKILL it and all its descendants at once when ``marker`` is logged (a preemption)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(env, PYTHONUNBUFFERED='1'), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = []
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:
            out.append(line)
            if marker in line or time.time() > deadline:
                break
    finally:
        for pid in _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    log = ''.join(out)
    assert marker in log, log[-3000:]
    return log


@pytest.mark.parametrize('name,procs', [('detcon-b', 1), ('detco', 1), ('detco', 2)])
def test_sigkill_then_resume_logs_the_uninterrupted_losses(name, procs, shapes_root, tmp_path):
    """A run SIGKILLed in epoch 2 and resumed from epoch_1.pth logs, step by step, the losses of a run that
    was never interrupted (EMA/key encoder, queues, optimizer, LR schedule, sampler and RNG all restored)."""
    batch = 4 // procs  # 16 images: 4 iterations an epoch either way
    opts = small(shapes_root, 2, batch) + ['randomness.seed=3']
    if procs == 1:
        def train(work):
            return [sys.executable, osp.join(ROOT, 'tools/train.py'), DEMOS[name], '--work-dir', work]
        env = tool_env()
    else:
        def train(work):
            return ['bash', osp.join(ROOT, 'tools/dist_train.sh'), DEMOS[name], str(procs), '--work-dir', work]
        env = tool_env(PYTHON=sys.executable, PORT=str(free_port()))
    ref, killed = str(tmp_path / 'ref'), str(tmp_path / 'killed')
    run_tool(train(ref)[1:] + opts, env=env)
    _train_until_killed(train(killed) + opts, env, 'Epoch(train) [2][1/4]')
    assert not osp.isfile(osp.join(killed, 'epoch_2.pth')), 'the kill came after epoch 2 ended'
    if procs > 1:
        env = tool_env(PYTHON=sys.executable, PORT=str(free_port()))
    resumed = run_tool(train(killed)[1:] + ['--resume'] + opts, env=env)
    log = resumed.stdout + resumed.stderr
    assert 'resumed epoch: 1, iter: 4' in log, log[-3000:]
    expected, got = _scalars(ref), _scalars(killed)
    assert sorted(expected) == sorted(got) == list(range(1, 9))
    for step in range(5, 9):  # epoch 2, as logged by the resumed run
        assert got[step]['epoch'] == 2
        assert _losses(got[step]) == _losses(expected[step]), step


@pytest.mark.parametrize('name', ['mocov2', 'simclr', 'densecl', 'detcon-s'])
def test_demo_trains(name, shapes_root, tmp_path):
    work = str(tmp_path / name)
    proc = run_tool(['tools/train.py', DEMOS[name], '--work-dir', work] + small(shapes_root, 1))
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), proc.stdout[-2000:]
    assert 'nan' not in ' '.join(l for l in (proc.stdout + proc.stderr).splitlines() if 'loss' in l).lower()


def test_dist_train_two_processes_gloo(shapes_root, tmp_path):
    work = str(tmp_path / 'dist')
    env = tool_env(PYTHON=sys.executable, PORT=str(free_port()))
    proc = run_tool(['tools/dist_train.sh', DEMOS['detcon-b'], '2', '--work-dir', work]
                    + small(shapes_root, 1, batch=2), env=env)
    log = proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), log[-3000:]
    # 16 images over 2 processes x 2 per process: 4 iterations an epoch.
    assert 'Epoch(train) [1][4/4]' in log, log[-3000:]
    logs = glob.glob(osp.join(work, '*', '*.log'))
    assert logs and 'Distributed training: True' in open(logs[0]).read()
