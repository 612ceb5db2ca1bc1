import os
import os.path as osp
import socket
import subprocess
import sys
from typing import List, Optional

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, torch.get_num_threads()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(**extra: str) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # resume must work without the global switch
    env.update(extra)
    return env


def run_tool(args: List[str], timeout: int = 600, env: Optional[dict] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run a tool with this interpreter; ``args[0]`` is a path relative to the repository root."""
    cmd = ([sys.executable] if args[0].endswith('.py') else ['bash']) + [osp.join(ROOT, args[0])] + args[1:]
    proc = subprocess.run(cmd, cwd=ROOT, env=env or tool_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}'
                             f'\n--- stderr\n{proc.stderr[-4000:]}')
    return proc


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory) -> str:
    """A tiny shapes dataset (16 train images of 128 px) shared by the training tests."""
    from mmdetcon.datasets.shapes import make_shapes
    root = str(tmp_path_factory.mktemp('shapes'))
    make_shapes(root, num_images=16, image_size=128, seed=0, split='train')
    return root
