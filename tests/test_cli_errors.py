"""Bad input to the tools ends with one clear line on stderr that names the offending thing."""
import os
import os.path as osp
import shutil

from conftest import ROOT, run_tool, tool_env

BYOL = 'configs/baselines/byol_resnet18_1xb32-lars-coslr-5e_shapes.py'


def _error_line(proc):
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return lines[-1]


def _opts(root, *extra):
    return ['--no-persistent-workers', '--cfg-options', f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.dataset.num_images=16', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_cfg.max_epochs=1', *extra]


def test_missing_config_file(tmp_path):
    line = _error_line(run_tool(['tools/train.py', str(tmp_path / 'nope.py')], check=False))
    assert 'nope.py' in line


def test_config_type_typo(tmp_path):
    cfg = tmp_path / 'typo.py'
    cfg.write_text(f"_base_ = ['{osp.join(ROOT, BYOL)}']\nmodel = dict(type='BYOLL')\n")
    line = _error_line(run_tool(['tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'w')], check=False))
    assert "'BYOLL'" in line and "did you mean 'BYOL'" in line, line


def test_cfg_options_key_typo(tmp_path):
    line = _error_line(run_tool(['tools/train.py', BYOL, '--cfg-options', 'train_cfgg.max_epochs=1'],
                                check=False))
    assert "'train_cfgg'" in line and "'train_cfg'" in line, line


def test_missing_data_root(tmp_path):
    missing = str(tmp_path / 'no_such_root')
    proc = run_tool(['tools/train.py', BYOL, '--work-dir', str(tmp_path / 'w')]
                    + _opts(missing, 'train_dataloader.dataset.generate=False'), check=False)
    line = _error_line(proc)
    assert missing in line, line


def test_unreadable_image(shapes_root, tmp_path):
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    images = sorted(os.listdir(osp.join(root, 'train', 'images')))
    bad = osp.join(root, 'train', 'images', images[3])
    with open(bad, 'wb') as f:
        f.write(b'this is not an image')
    proc = run_tool(['tools/train.py', BYOL, '--work-dir', str(tmp_path / 'w')] + _opts(root), check=False)
    line = _error_line(proc)
    assert images[3] in line, line


class _System:
    """Pickles as ``os.system(command)``: a crafted checkpoint."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_crafted_checkpoint_is_refused_and_never_runs(shapes_root, tmp_path):
    import torch
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {}, 'x': _System(f'touch {marker}')}, evil)
    proc = run_tool(['tools/train.py', BYOL, '--work-dir', str(tmp_path / 'w'), '--resume', str(evil)]
                    + _opts(shapes_root), check=False)
    line = _error_line(proc)
    assert 'UnsafeCheckpointError' in line and str(evil) in line and 'posix.system' in line, line
    assert not marker.exists()


def test_crash_keeps_its_traceback_on_stderr_and_in_the_log(shapes_root, tmp_path):
    """A failure that is not bad input (here a hook that raises at its first iteration) is not shortened to
    one line: its traceback reaches stderr and the run's log file."""
    hook = tmp_path / 'crash_hook.py'
    hook.write_text('from mmengine.hooks import Hook\nfrom mmpretrain.registry import HOOKS\n\n\n'
                    '@HOOKS.register_module()\nclass CrashAtFirstIter(Hook):\n'
                    '    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):\n'
                    "        raise AssertionError('planted failure in a hook')\n")
    cfg = tmp_path / 'crash.py'
    cfg.write_text(f"_base_ = ['{osp.join(ROOT, BYOL)}']\n"
                   "custom_imports = dict(imports=['mmdetcon', 'crash_hook'], allow_failed_imports=False)\n"
                   "custom_hooks = [dict(type='CrashAtFirstIter')]\n")
    work = tmp_path / 'w'
    proc = run_tool(['tools/train.py', str(cfg), '--work-dir', str(work)] + _opts(shapes_root), check=False,
                    env=tool_env(PYTHONPATH=ROOT + os.pathsep + str(tmp_path)))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' in proc.stderr and 'planted failure in a hook' in proc.stderr, proc.stderr[-3000:]
    assert 'after_train_iter' in proc.stderr
    logs = [osp.join(d, f) for d, _, fs in os.walk(work) for f in fs if f.endswith('.log')]
    assert logs and any('planted failure in a hook' in open(p).read() and 'Traceback' in open(p).read()
                        for p in logs), logs
