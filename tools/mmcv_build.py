"""Decisions behind ``tools/install_mmcv.sh``: which mmcv build to make, its cache key, and whether a wheel or
an installed mmcv has CUDA ops. Run by that script; also usable alone:

    python tools/mmcv_build.py plan --version 2.1.0 --cache ~/.cache/mmdetcon --cuda-ops auto
    python tools/mmcv_build.py wheel-ops WHEEL        # cuda-ops | cpu-ops
    python tools/mmcv_build.py installed-ops 2.1.0    # cuda-ops | cpu-ops | none
    python tools/mmcv_build.py check-gpu              # one mmcv op on the GPU, when one is visible

A wheel's ops are read from its compiled extension without installing it: a CUDA build links torch's CUDA
libraries (``libc10_cuda.so``, ``libtorch_cuda.so``) and registers nvcc's kernels; a CPU-only build names none.
"""
import argparse
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from typing import Dict, List, Mapping, Optional

#: Byte strings found only in an extension built with CUDA: torch's CUDA libraries it links (NEEDED
#: entries of a CUDAExtension) and nvcc's kernel registration. (Not ``libcudart``: torch's CPU library
#: names it in messages.)
CUDA_MARKERS = (b'libc10_cuda.so', b'libtorch_cuda.so', b'__cudaRegisterFatBinary')


def find_nvcc(env: Mapping[str, str]) -> Optional[str]:
    """``$CUDA_HOME/bin/nvcc`` when ``CUDA_HOME`` (or ``CUDA_PATH``) is set, else ``nvcc`` on ``PATH``."""
    home = env.get('CUDA_HOME') or env.get('CUDA_PATH')
    if home:
        path = osp.join(home, 'bin', 'nvcc')
        return path if os.access(path, os.X_OK) else None
    return shutil.which('nvcc', path=env.get('PATH', ''))


def cuda_home_for(nvcc: str, env: Mapping[str, str]) -> str:
    """The toolkit ``nvcc`` belongs to, as torch's extension build needs it in ``CUDA_HOME``: ``CUDA_HOME``
    when set, else the directory above ``bin/`` of the resolved ``nvcc``, else ``/usr/local/cuda``, whichever
    has ``include/cuda_runtime.h`` (a wrapper script in ``/usr/local/bin`` has no headers beside it); empty
    when none has."""
    if env.get('CUDA_HOME') or env.get('CUDA_PATH'):
        return env.get('CUDA_HOME') or env['CUDA_PATH']
    for home in (osp.dirname(osp.dirname(osp.realpath(nvcc))), '/usr/local/cuda'):
        if osp.isfile(osp.join(home, 'include', 'cuda_runtime.h')):
            return home
    return ''


def nvcc_release(nvcc: str) -> Optional[str]:
    """The CUDA release ``nvcc --version`` reports (e.g. ``'13.0'``), None when it cannot be read."""
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'release (\d+\.\d+)', out)
    return found.group(1) if found else None


def arch_tag(arch_list: str) -> str:
    """``TORCH_CUDA_ARCH_LIST`` as a key part: entries sorted and joined by ``_`` (``'9.0;8.0+PTX'`` ->
    ``'8.0+PTX_9.0'``)."""
    def order(entry: str) -> tuple:
        number = entry.split('+')[0]
        return (float(number) if re.fullmatch(r'\d+(\.\d+)?', number) else float('inf'), entry)

    return '_'.join(sorted(set(e for e in re.split(r'[;,\s]+', arch_list) if e), key=order))


def torch_build() -> Dict[str, Optional[str]]:
    """torch's ``__version__``, ``cuda`` and ``hip`` from its ``torch/version.py``, without importing torch
    (seconds on a loaded machine)."""
    import importlib.util
    import runpy
    spec = importlib.util.find_spec('torch')
    if spec is None or not spec.origin:
        raise ImportError('torch is not installed in this environment')
    info = runpy.run_path(osp.join(osp.dirname(spec.origin), 'version.py'))
    return dict(version=info['__version__'], cuda=info.get('cuda'), hip=info.get('hip'))


def gpu_visible() -> bool:
    import torch
    return torch.cuda.is_available()


def visible_gpu_archs() -> List[str]:
    """Compute capabilities of the visible GPUs, e.g. ``['8.0', '9.0']`` (empty without a GPU)."""
    import torch
    if not torch.cuda.is_available():
        return []
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return [f'{major}.{minor}' for major, minor in sorted(caps)]


def wheel_has_cuda_ops(wheel: str) -> bool:
    """Whether an mmcv wheel's compiled ops (``mmcv/_ext*.so``) were built with CUDA."""
    with zipfile.ZipFile(wheel) as zf:
        exts = [n for n in zf.namelist() if re.fullmatch(r'mmcv/_ext[^/]*\.(so|pyd)', n)]
        if not exts:
            raise ValueError(f'{wheel} has no compiled mmcv ops (mmcv/_ext*.so)')
        for name in exts:
            data = zf.read(name)
            if any(marker in data for marker in CUDA_MARKERS):
                return True
    return False


def cached_wheel(directory: str) -> str:
    wheels = sorted(glob.glob(osp.join(directory, 'mmcv-*.whl')))
    return wheels[0] if wheels else ''


def plan(version: str, cache: str, request: str, env: Mapping[str, str]) -> Dict[str, str]:
    """What ``install_mmcv.sh`` does. ``request``: ``'auto'`` (CUDA ops when torch is a CUDA build and
    nvcc is found or a GPU is visible), ``'1'`` (CUDA ops, or an error) or ``'0'`` (CPU-only ops).
    ``ERROR`` is set when the script must stop (the GPUs of a CUDA build are unknown, torch has no CUDA),
    ``BUILD_ERROR`` when no wheel is cached and none can be built here; a cached CUDA wheel needs no nvcc
    (GPU nodes of a cluster that share ``MMDETCON_CACHE``)."""
    build = torch_build()
    py = f'py{sys.version_info[0]}{sys.version_info[1]}'
    cuda, hip = build['cuda'], build['hip']
    tag = 'cu' + cuda.replace('.', '') if cuda else (f'rocm{hip}' if hip else 'cpu')
    nvcc = find_nvcc(env) or ''
    release = nvcc_release(nvcc) if nvcc else None
    cuda_home = cuda_home_for(nvcc, env) if nvcc else ''
    error, build_error, arch = '', '', ''
    if request == 'auto':
        want = bool(cuda and (nvcc or gpu_visible()))  # torch is imported only without nvcc
        reason = (f'torch is built with CUDA {cuda} and ' + (f'nvcc {release or "?"} is at {nvcc}' if nvcc
                                                              else 'a GPU is visible') if want else
                  f'nvcc is at {nvcc}, but torch is a CPU-only build' if nvcc else
                  'no nvcc found (PATH, $CUDA_HOME/bin) and no GPU visible')
    else:
        want = request == '1'
        reason = ('asked for (--cuda-ops / MMCV_CUDA_OPS=1 / FORCE_CUDA=1)' if want
                  else 'asked for (--cpu-ops / MMCV_CUDA_OPS=0)')
    if want:
        if not cuda:
            error = 'CUDA ops need a CUDA build of torch; this torch is a CPU-only build (torch.version.cuda is None)'
        elif not nvcc:
            build_error = (f'building CUDA ops needs nvcc (the CUDA {cuda} toolkit) on PATH or in $CUDA_HOME/bin; '
                           'none found. Build on a node that has it (or share its cached wheel), or pass --cpu-ops')
        elif release and release.split('.')[0] != cuda.split('.')[0]:
            build_error = (f'nvcc {release} ({nvcc}) and torch (CUDA {cuda}) differ in CUDA major version, which '
                           f"torch's extension build refuses: point CUDA_HOME at a CUDA {cuda} toolkit")
        elif not cuda_home:
            build_error = (f'found {nvcc} but no CUDA headers (include/cuda_runtime.h) beside it or in '
                           '/usr/local/cuda: set CUDA_HOME to its toolkit')
        arch = env.get('TORCH_CUDA_ARCH_LIST', '').strip()
        if not arch:
            archs = visible_gpu_archs()
            if archs:
                arch = ';'.join(archs)
                reason += f'; TORCH_CUDA_ARCH_LIST={arch} from the visible GPUs'
            elif not error:
                error = ('TORCH_CUDA_ARCH_LIST is not set and no GPU is visible, so the GPUs to compile for are '
                         "unknown: set it to cover the cluster's GPUs, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0' for "
                         'A100 and H100 nodes, or pass --cpu-ops (MMCV_CUDA_OPS=0) for CPU-only ops')
    key = f'{py}-torch{build["version"].split("+")[0]}-{tag}-{"cuda-ops" if want else "cpu-ops"}'
    if want and arch:
        key += f'-arch{arch_tag(arch)}'
    wheel_dir = osp.join(cache, 'wheels', f'mmcv-{version}-{key}')
    wheel = cached_wheel(wheel_dir)
    migrate = ''
    if not wheel and not want:
        # The key before CUDA builds were told apart: Python and torch version only. Its wheels were built
        # without FORCE_CUDA; reuse one only when its extension shows no CUDA.
        old_key = f'{py}-torch{build["version"]}'.replace('+', '-')
        old = cached_wheel(osp.join(cache, 'wheels', f'mmcv-{version}-{old_key}'))
        if old and not wheel_has_cuda_ops(old):
            migrate = old
    return dict(KEY=key, CUDA_OPS='1' if want else '0', FORCE_CUDA='1' if want else '0', ARCH=arch,
                TORCH_CUDA=cuda or '', NVCC=nvcc, CUDA_HOME=cuda_home if want else '',
                NVCC_RELEASE=release or '', REASON=reason, WHEEL_DIR=wheel_dir, WHEEL=wheel, MIGRATE=migrate,
                ERROR=error, BUILD_ERROR='' if wheel else build_error)


def installed_ops(version: str) -> str:
    """``'cuda-ops'`` / ``'cpu-ops'`` for an installed mmcv ``version`` with compiled ops, else ``'none'``."""
    import importlib.metadata as metadata
    try:
        if metadata.version('mmcv') != version:
            return 'none'
        from mmcv.ops import get_compiling_cuda_version
    except (ImportError, metadata.PackageNotFoundError):
        return 'none'
    return 'cpu-ops' if get_compiling_cuda_version() == 'not available' else 'cuda-ops'


def check_gpu() -> Optional[str]:
    """Run ``mmcv.ops.nms`` on the GPU and compare it with the CPU result; the reason when it fails, None
    when it agrees or no GPU is visible."""
    import torch
    if not torch.cuda.is_available():
        return None
    from mmcv.ops import get_compiling_cuda_version, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    try:
        _, keep = nms(boxes.cuda(), scores.cuda(), 0.5)
        _, expected = nms(boxes, scores, 0.5)
        if keep.cpu().tolist() != expected.tolist():
            return f'mmcv.ops.nms on the GPU kept boxes {keep.cpu().tolist()}, on the CPU {expected.tolist()}'
    except Exception as e:  # any failure of the op is the finding
        built = get_compiling_cuda_version()
        try:
            gpu = torch.cuda.get_device_name()
            cap = '.'.join(map(str, torch.cuda.get_device_capability()))
        except Exception:  # the device itself is unusable
            gpu, cap = 'the GPU', '<its compute capability>'
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        return (f'mmcv.ops.nms does not run on {gpu} (compute capability {cap}): {type(e).__name__}: {first}. '
                f'The installed mmcv ops were built '
                f'{"without CUDA" if built == "not available" else "with CUDA " + built}. Build them on a node '
                f'with nvcc (the CUDA {torch.version.cuda} toolkit), for this GPU among others: '
                f"TORCH_CUDA_ARCH_LIST='{cap}' MMCV_CUDA_OPS=1 PYTHON={sys.executable} tools/install_mmcv.sh "
                '(it sets FORCE_CUDA=1); README "mmcv on a GPU cluster"')
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('plan')
    p.add_argument('--version', required=True)
    p.add_argument('--cache', required=True)
    p.add_argument('--cuda-ops', choices=['auto', '0', '1'], default='auto')
    p.add_argument('--shell', action='store_true', help='shell assignments P_KEY=... instead of KEY=value lines')
    sub.add_parser('wheel-ops').add_argument('wheel')
    sub.add_parser('installed-ops').add_argument('version')
    sub.add_parser('check-gpu')
    args = parser.parse_args(argv)
    if args.cmd == 'plan':
        for name, value in plan(args.version, args.cache, args.cuda_ops, os.environ).items():
            print(f'P_{name}={shlex.quote(value)}' if args.shell else f'{name}={value}')
    elif args.cmd == 'wheel-ops':
        print('cuda-ops' if wheel_has_cuda_ops(args.wheel) else 'cpu-ops')
    elif args.cmd == 'installed-ops':
        print(installed_ops(args.version))
    else:
        problem = check_gpu()
        if problem:
            print(problem, file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
