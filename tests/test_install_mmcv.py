"""tools/install_mmcv.sh's decisions, without building: the cache key tells CUDA builds apart, FORCE_CUDA
follows nvcc unless CPU-only ops are asked for, old-key wheels are reused only when CPU-only, and a GPU
that mmcv's ops cannot run on stops the install with the way to build for it."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import zipfile
from unittest import mock

import pytest
import torch

from conftest import ROOT, tool_env

SCRIPT = osp.join(ROOT, 'tools', 'install_mmcv.sh')
_spec = importlib.util.spec_from_file_location('mmcv_build', osp.join(ROOT, 'tools', 'mmcv_build.py'))
mmcv_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mmcv_build)

TORCH_CUDA = torch.version.cuda
PY = f'py{sys.version_info[0]}{sys.version_info[1]}'
TORCH = torch.__version__.split('+')[0]
TAG = 'cu' + TORCH_CUDA.replace('.', '') if TORCH_CUDA else 'cpu'
CPU_SO = b'\x7fELF...libc10.so\x00libtorch_cpu.so\x00libtorch_python.so\x00nms_cpu\x00'
CUDA_SO = b'\x7fELF...libc10.so\x00libc10_cuda.so\x00libtorch_cuda.so\x00nms_cuda\x00'


@pytest.fixture
def toolkit(tmp_path):
    """A fake CUDA toolkit: bin/nvcc reporting torch's CUDA release (13.0 if torch has none), include/."""
    home = tmp_path / 'cuda'
    (home / 'bin').mkdir(parents=True)
    (home / 'include').mkdir()
    (home / 'include' / 'cuda_runtime.h').write_text('')
    nvcc = home / 'bin' / 'nvcc'
    nvcc.write_text(f'#!/bin/sh\necho "Cuda compilation tools, release {TORCH_CUDA or "13.0"}, V0"\n')
    nvcc.chmod(0o755)
    return home


def _env(tmp_path, nvcc_dir=None, **extra) -> dict:
    env = tool_env(PYTHON=sys.executable, MMDETCON_CACHE=str(tmp_path / 'cache'))
    for name in ('CUDA_HOME', 'CUDA_PATH', 'MMCV_CUDA_OPS', 'FORCE_CUDA', 'TORCH_CUDA_ARCH_LIST', 'CONSTRAINTS'):
        env.pop(name, None)
    env['PATH'] = os.pathsep.join(([str(nvcc_dir)] if nvcc_dir else []) + ['/usr/bin', '/bin'])
    env.update(extra)
    return env


def _run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', SCRIPT] + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _plan(proc: subprocess.CompletedProcess) -> dict:
    return dict(line.split('=', 1) for line in proc.stdout.splitlines() if '=' in line)


def _wheel(path, so: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('mmcv/__init__.py', '')
        zf.writestr('mmcv/_ext.cpython-311-x86_64-linux-gnu.so', so)
    return str(path)


def test_print_key_follows_nvcc_and_the_cpu_switch(tmp_path, toolkit):
    arch = dict(TORCH_CUDA_ARCH_LIST='9.0;8.0')
    runs = {
        'no nvcc': _run(['--print-key'], _env(tmp_path, **arch)),
        'nvcc': _run(['--print-key'], _env(tmp_path, toolkit / 'bin', **arch)),
        'nvcc --cpu-ops': _run(['--print-key', '--cpu-ops'], _env(tmp_path, toolkit / 'bin', **arch)),
        'nvcc MMCV_CUDA_OPS=0': _run(['--print-key'], _env(tmp_path, toolkit / 'bin', MMCV_CUDA_OPS='0', **arch)),
    }
    for name, proc in runs.items():
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
    plans = {name: _plan(proc) for name, proc in runs.items()}
    cpu_key = f'{PY}-torch{TORCH}-{TAG}-cpu-ops'
    for name in ('no nvcc', 'nvcc --cpu-ops', 'nvcc MMCV_CUDA_OPS=0'):
        assert plans[name]['KEY'] == cpu_key, (name, plans[name])
        assert plans[name]['FORCE_CUDA'] == '0' and plans[name]['CUDA_OPS'] == '0', (name, plans[name])
    cuda = plans['nvcc']
    if TORCH_CUDA:  # nvcc + a CUDA build of torch: CUDA ops for the listed GPUs
        assert cuda['KEY'] == f'{PY}-torch{TORCH}-{TAG}-cuda-ops-arch8.0_9.0', cuda
        assert cuda['FORCE_CUDA'] == '1' and cuda['ARCH'] == '9.0;8.0', cuda
        assert cuda['NVCC'] == str(toolkit / 'bin' / 'nvcc') and cuda['CUDA_HOME'] == str(toolkit), cuda
    else:  # a CPU-only torch cannot build CUDA ops whatever nvcc there is
        assert cuda['KEY'] == cpu_key and cuda['FORCE_CUDA'] == '0', cuda
    assert cuda['WHEEL_DIR'] == str(tmp_path / 'cache' / 'wheels' / f'mmcv-2.1.0-{cuda["KEY"]}')
    assert not cuda['WHEEL'] and not cuda['MIGRATE'] and not cuda['ERROR'] and not cuda['BUILD_ERROR'], cuda


def test_plan_keys_errors_and_sources(tmp_path, toolkit):
    cache = str(tmp_path / 'cache')
    path = dict(PATH=str(toolkit / 'bin'))
    if TORCH_CUDA:
        a = mmcv_build.plan('2.1.0', cache, 'auto', dict(path, TORCH_CUDA_ARCH_LIST='8.0'))
        b = mmcv_build.plan('2.1.0', cache, 'auto', dict(path, TORCH_CUDA_ARCH_LIST='8.0 9.0+PTX'))
        assert a['KEY'].endswith('-cuda-ops-arch8.0') and b['KEY'].endswith('-cuda-ops-arch8.0_9.0+PTX')
        # CUDA_HOME names the toolkit: its nvcc is used even when PATH has none.
        c = mmcv_build.plan('2.1.0', cache, '1', dict(PATH='/bin', CUDA_HOME=str(toolkit),
                                                       TORCH_CUDA_ARCH_LIST='8.0'))
        assert c['KEY'] == a['KEY'] and c['NVCC'] == str(toolkit / 'bin' / 'nvcc') and not c['ERROR']
        if not torch.cuda.is_available():  # a login node: the GPUs to build for must be named
            assert 'TORCH_CUDA_ARCH_LIST' in mmcv_build.plan('2.1.0', cache, 'auto', path)['ERROR']
        # nvcc without headers beside it (a wrapper script): the toolkit in /usr/local/cuda, else an error.
        (toolkit / 'include' / 'cuda_runtime.h').unlink()
        bare = mmcv_build.plan('2.1.0', cache, '1', dict(path, TORCH_CUDA_ARCH_LIST='8.0'))
        if osp.isfile('/usr/local/cuda/include/cuda_runtime.h'):
            assert bare['CUDA_HOME'] == '/usr/local/cuda' and not bare['BUILD_ERROR'], bare
        else:
            assert 'set CUDA_HOME' in bare['BUILD_ERROR'], bare
    forced = mmcv_build.plan('2.1.0', cache, '1', dict(PATH='/bin', TORCH_CUDA_ARCH_LIST='8.0'))
    if TORCH_CUDA:  # no nvcc: only building is impossible; a cached wheel (a shared cache) is installed
        assert 'needs nvcc' in forced['BUILD_ERROR'] and not forced['ERROR'], forced
        _wheel(tmp_path / 'cache' / 'wheels' / f'mmcv-2.1.0-{forced["KEY"]}' / 'mmcv-2.1.0-x.whl', CUDA_SO)
        shared = mmcv_build.plan('2.1.0', cache, '1', dict(PATH='/bin', TORCH_CUDA_ARCH_LIST='8.0'))
        assert shared['WHEEL'] and not shared['BUILD_ERROR'] and not shared['ERROR'], shared
    else:
        assert 'CPU-only build' in forced['ERROR'], forced
    assert mmcv_build.arch_tag('9.0;8.6, 8.0+PTX;Hopper') == '8.0+PTX_8.6_9.0_Hopper'


def test_old_key_wheel_is_reused_only_when_cpu_only(tmp_path):
    cache = tmp_path / 'cache'
    old = cache / 'wheels' / f'mmcv-2.1.0-{PY}-torch{torch.__version__}'.replace('+', '-')
    cpu = _wheel(old / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', CPU_SO)
    assert mmcv_build.plan('2.1.0', str(cache), '0', dict(PATH='/bin'))['MIGRATE'] == cpu
    assert not mmcv_build.plan('2.1.0', str(cache), '1', dict(PATH='/bin'))['MIGRATE']  # arch unknown
    # --wheel-only: the wheel moves under the new key (a copy), nothing is installed.
    proc = _run(['--wheel-only', '--cpu-ops'], _env(tmp_path))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    new = cache / 'wheels' / f'mmcv-2.1.0-{PY}-torch{TORCH}-{TAG}-cpu-ops' / osp.basename(cpu)
    assert proc.stdout.splitlines()[-1] == str(new) and new.read_bytes() == open(cpu, 'rb').read()
    assert 'reusing' in proc.stdout and 'building' not in proc.stdout
    plan = mmcv_build.plan('2.1.0', str(cache), '0', dict(PATH='/bin'))
    assert plan['WHEEL'] == str(new) and not plan['MIGRATE']
    # An old-key wheel with CUDA ops is never taken for a CPU-only one.
    other = tmp_path / 'other'
    _wheel(other / 'wheels' / old.name / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', CUDA_SO)
    assert not mmcv_build.plan('2.1.0', str(other), '0', dict(PATH='/bin'))['MIGRATE']


def test_wheel_ops_read_real_extensions(tmp_path):
    """The markers on real binaries: torchvision's compiled ops (CUDA when torch is a CUDA build) and the
    installed mmcv's own extension."""
    import torchvision
    so = sorted(p for p in os.listdir(osp.dirname(torchvision.__file__)) if p.startswith('_C') and p.endswith('.so'))
    with open(osp.join(osp.dirname(torchvision.__file__), so[0]), 'rb') as f:
        wheel = _wheel(tmp_path / 'tv.whl', f.read())
    assert mmcv_build.wheel_has_cuda_ops(wheel) == bool(TORCH_CUDA)
    ops = mmcv_build.installed_ops('2.1.0')
    if ops != 'none':
        import mmcv
        ext = [p for p in os.listdir(osp.dirname(mmcv.__file__)) if p.startswith('_ext') and p.endswith('.so')]
        with open(osp.join(osp.dirname(mmcv.__file__), ext[0]), 'rb') as f:
            wheel = _wheel(tmp_path / 'mmcv.whl', f.read())
        assert mmcv_build.wheel_has_cuda_ops(wheel) == (ops == 'cuda-ops')
    with pytest.raises(ValueError, match='no compiled mmcv ops'):
        with zipfile.ZipFile(tmp_path / 'lite.whl', 'w') as zf:
            zf.writestr('mmcv/__init__.py', '')
        mmcv_build.wheel_has_cuda_ops(str(tmp_path / 'lite.whl'))


def test_gpu_that_the_ops_cannot_run_on_says_how_to_build():
    if mmcv_build.installed_ops('2.1.0') == 'none':
        pytest.skip('needs mmcv with compiled ops (make ops)')
    if torch.cuda.is_available():
        assert (mmcv_build.check_gpu() is None) == (mmcv_build.installed_ops('2.1.0') == 'cuda-ops')
        return
    assert mmcv_build.check_gpu() is None  # no GPU: nothing to check
    with mock.patch.object(torch.cuda, 'is_available', return_value=True):  # a GPU node without a driver
        problem = mmcv_build.check_gpu()
    assert problem and 'mmcv.ops.nms does not run on' in problem, problem
    assert 'MMCV_CUDA_OPS=1' in problem and 'TORCH_CUDA_ARCH_LIST=' in problem and 'FORCE_CUDA=1' in problem


def test_make_passes_the_cpu_switch_and_the_constraints():
    env = tool_env()
    env.pop('MMCV_CUDA_OPS', None)
    proc = subprocess.run(['make', '-n', '-B', '.venv/.mmdetcon-ops'], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=60)
    constraints = osp.join(ROOT, 'requirements', 'constraints.txt')
    lines = proc.stdout.splitlines()
    assert any('-r requirements/runtime.txt' in l and f'-c {constraints}' in l for l in lines), proc.stdout
    ops = [l for l in lines if 'tools/install_mmcv.sh' in l and '--lite' not in l]
    assert ops and 'MMCV_CUDA_OPS=0 ' in ops[0] and f'CONSTRAINTS={constraints}' in ops[0], proc.stdout
