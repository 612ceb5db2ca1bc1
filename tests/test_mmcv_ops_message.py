"""Pretraining runs without mmcv's compiled ops (mmcv-lite); detection configs then stop with one line that
says how to get them. The ops are hidden from a subprocess by a sitecustomize that makes ``mmcv._ext``
absent to imports and to finders, which is what mmcv-lite (no compiled extension) looks like to mmcv and
mmengine."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from conftest import ROOT, run_tool, tool_env
from mmdetcon.utils.cli import needs_mmcv_ops

MMDET_CONFIG = 'configs/benchmarks/mmdet/mask-rcnn_r18_fpn_1xb4-2e_shapes.py'
DETCON = 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py'
# None in sys.modules: imports of mmcv._ext fail and find_spec / pkgutil.find_loader say it is absent.
HIDE_OPS = "import sys\nsys.modules['mmcv._ext'] = None\n"


@pytest.fixture(scope='module')
def no_ops_env(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp('no_ops')
    (site / 'sitecustomize.py').write_text(HIDE_OPS)
    env = tool_env()
    env['PYTHONPATH'] = str(site) + os.pathsep + env['PYTHONPATH']
    probe = subprocess.run([sys.executable, '-c', 'import mmcv.ops'], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and 'ModuleNotFoundError' in probe.stderr, probe.stderr[-2000:]
    return env


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def test_needs_mmcv_ops_follows_the_config():
    assert needs_mmcv_ops(Config.fromfile(osp.join(ROOT, MMDET_CONFIG)))
    assert not needs_mmcv_ops(Config.fromfile(osp.join(ROOT, DETCON)))
    assert needs_mmcv_ops(Config(dict(model=dict(type='X', head=[dict(type='mmdet.RPNHead')]))))
    assert needs_mmcv_ops(Config(dict(custom_imports=dict(imports=['mmdet.models']))))
    assert not needs_mmcv_ops(Config(dict(model=dict(type='mmpretrain.ResNet'),
                                          custom_imports=dict(imports='mmdetcon'))))


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_mmdet_config_without_ops_says_how(tool, no_ops_env, tmp_path):
    args = [tool, MMDET_CONFIG] + (['missing.pth'] if tool.endswith('test.py') else [])
    line = _error_line(run_tool(args + ['--work-dir', str(tmp_path)], env=no_ops_env, check=False,
                                timeout=300))
    assert f"{MMDET_CONFIG} runs mmdet and needs mmcv's compiled ops" in line, line
    assert 'mmcv._ext' in line, line
    assert '`make ops`' in line and f'PYTHON={sys.executable} tools/install_mmcv.sh' in line, line


def test_ops_needed_by_an_imported_module_says_how(no_ops_env, tmp_path):
    """A pretraining config that imports a detection module: the failure deep in the import names the fix."""
    config = tmp_path / 'detcon_with_detection_import.py'
    config.write_text(f"_base_ = '{osp.join(ROOT, DETCON)}'\n"
                      "custom_imports = dict(imports=['mmdetcon', 'mmdetcon.datasets.shapes_coco'], "
                      "allow_failed_imports=False)\n")
    line = _error_line(run_tool(['tools/train.py', str(config), '--work-dir', str(tmp_path / 'w')],
                                env=no_ops_env, check=False, timeout=300))
    assert "a module this run imports needs mmcv's compiled ops" in line and '`make ops`' in line, line


def test_pretraining_demo_runs_without_ops(no_ops_env, shapes_root, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool(['tools/train.py', DETCON, '--work-dir', str(work), '--cfg-options',
                     f'train_dataloader.dataset.data_root={shapes_root}', 'train_dataloader.dataset.num_images=4',
                     'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
                     'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
                     'default_hooks.logger.interval=1'], env=no_ops_env, timeout=300)
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [1][1/1]' in log, log[-3000:]
    assert glob.glob(osp.join(str(work), '*', 'vis_data', 'vis_image', 'views_0_1.png')), log[-3000:]
