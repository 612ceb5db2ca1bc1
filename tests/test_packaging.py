"""mmdetcon installs and runs the OpenMMLab way: a wheel carries configs, tools and the model index under
mmdetcon/.mim; ``mmdetcon::`` configs resolve (from the checkout here, from the installed wheel in a clean
process); ``mim train`` / ``mim test`` run from the wheel; the model index covers every shipped config; pyproject's
dependencies keep the user's torch."""
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import ROOT

DETCON_SHAPES = 'detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py'
PROBE = 'resnet18_1xb64-linear-multilabel-coslr-20e_shapes.py'
PRETRAIN_DIRS = ('detcon', 'detco', 'baselines')


def _configs(*dirs: str) -> list:
    return sorted(osp.relpath(p, ROOT) for d in dirs
                  for p in glob.glob(osp.join(ROOT, 'configs', d, '**', '*.py'), recursive=True))


def _metafiles() -> dict:
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    metas = {}
    for rel in index['Import']:
        with open(osp.join(ROOT, rel)) as f:
            metas[rel] = yaml.safe_load(f)
    return metas


def _models() -> list:
    return [m for meta in _metafiles().values() for m in meta['Models']]


# ---------------------------------------------------------------------------------------------- pyproject


def test_pyproject_dependencies_are_ranges_without_torch():
    with open(osp.join(ROOT, 'pyproject.toml'), 'rb') as f:
        project = tomllib.load(f)['project']
    reqs = {Requirement(r).name.lower(): Requirement(r) for r in project['dependencies']}
    det = {Requirement(r).name.lower(): Requirement(r) for r in project['optional-dependencies']['det']}
    assert not {'torch', 'torchvision'} & (set(reqs) | set(det)), 'torch comes from the user environment'
    for name, req, inside, outside in (
            ('mmengine', reqs, ['0.10.7', '0.10.9'], ['0.10.6', '0.11.0']),
            ('mmpretrain', reqs, ['1.2.0', '1.2.5'], ['1.1.1', '1.3.0']),
            ('mmdet', det, ['3.3.0', '3.3.9'], ['3.2.0', '3.4.0'])):
        spec = req[name].specifier
        assert all(spec.contains(v) for v in inside), f'{req[name]} refuses one of {inside}'
        assert not any(spec.contains(v) for v in outside), f'{req[name]} accepts one of {outside}'
    pinned = [str(r) for r in list(reqs.values()) + list(det.values())
              if any(s.operator in ('==', '===') for s in r.specifier)]
    assert not pinned, f'exact pins belong in requirements/constraints.txt: {pinned}'


# ---------------------------------------------------------------------------------------------- model index


def test_model_index_covers_every_config_and_names_real_files():
    metas = _metafiles()
    on_disk = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '**', 'metafile.yml'),
                                                            recursive=True))
    assert sorted(metas) == on_disk, 'model-index.yml imports exactly the metafiles under configs/'
    models = _models()
    names = [m['Name'] for m in models]
    assert len(names) == len(set(names)), 'model names are unique'
    listed = {m['Config'] for m in models}
    for path in listed:
        assert osp.isfile(osp.join(ROOT, path)), f'metafile config {path} does not exist'
    shipped = _configs(*PRETRAIN_DIRS, 'benchmarks')
    assert shipped and not set(shipped) - listed, f'configs missing from the metafiles: {set(shipped) - listed}'
    collections = {c['Name']: c for meta in metas.values() for c in meta.get('Collections', [])}
    for c in collections.values():
        assert c['Paper']['Title'] and c['Paper']['URL'].startswith('https://arxiv.org/abs/'), c['Name']
        assert c['Code']['URL'].startswith('https://github.com/'), c['Name']
        if 'README' in c:
            assert osp.isfile(osp.join(ROOT, c['README'])), c['README']
    for m in models:
        assert m.get('In Collection') in collections or 'benchmarks/' in m['Config'], m['Name']
        if osp.splitext(osp.basename(m['Config']))[0] == m['Name']:
            continue
        # released weights: the import command runs a shipped tool on the documented original file
        tool, original = m['Import'].split()[1:3]
        assert osp.isfile(osp.join(ROOT, tool)) and tool.startswith('tools/model_converters/import_'), m['Import']
        assert m['Converted From']['Weights'].split()[0] == original, m['Name']
        assert m['Converted From']['Code'].startswith('https://github.com/'), m['Name']


def test_pretraining_models_state_their_config_and_mark_published_results():
    from mmengine.config import Config
    models = {m['Config']: m for m in _models()}
    for path in _configs(*PRETRAIN_DIRS):
        m = models[path]
        assert m['Name'] == osp.splitext(osp.basename(path))[0]
        gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)', path).groups())
        cfg = Config.fromfile(osp.join(ROOT, path))
        meta = m['Metadata']
        assert cfg.train_dataloader.batch_size == per_gpu, path
        assert meta['Batch Size'] == gpus * per_gpu, path
        assert meta['Training Resources'].startswith(f'{gpus}x ') and f'b{per_gpu}' in meta['Training Resources']
        assert meta['Epochs'] == cfg.train_cfg.max_epochs, path
        assert ('in1k' in path) == (meta['Training Data'] == 'ImageNet-1k'), path
    for m in _models():
        for result in m.get('Results') or []:
            assert result['Metrics'] and all(k.endswith('(paper)') for k in result['Metrics']), m['Name']
            assert 'paper' in m['Results Source'], m['Name']


def test_openmim_reads_the_model_index():
    """``mim search`` loads model-index.yml with modelindex and tabulates it with convert2df."""
    pytest.importorskip('mim', reason='openmim is installed by requirements/tests.txt')
    from mim.commands.search import convert2df
    from modelindex.load_model_index import load
    index = load(osp.join(ROOT, 'model-index.yml'))
    # modelindex resolves README paths against the metafile's folder; OpenMMLab's (and mim's) are root-relative
    def root_relative_readme(error: str) -> bool:
        found = re.fullmatch(r'Path to README file (\S+) is not a valid file\.', error)
        return bool(found) and osp.isfile(osp.join(ROOT, found.group(1)))

    errors = [(entry['type'], error) for entry in index.collect_check_errors() for error in entry['errors']
              if not root_relative_readme(error)]
    assert not errors, errors
    table = convert2df(index)
    assert set(table.index) == {m['Name'] for m in _models()}
    assert table.loc['detcon-b_resnet50_16xb256-lars-coslr-1000e_in1k',
                     'coco/mask_r-cnn_r50-fpn_1x_box_ap_(paper)'] == 42.7


# ---------------------------------------------------------------------------------------------- in this process


def _user_config(tmp_path, base: str, **extra: str) -> str:
    path = tmp_path / 'user_cfg.py'
    lines = [f"_base_ = 'mmdetcon::{base}'"] + [f'{k} = {v}' for k, v in extra.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_mmdetcon_base_resolves_and_builds_in_its_scope(shapes_root, tmp_path):
    """A user's config inheriting ``mmdetcon::`` (checkout: setup.py links mmdetcon/.mim at ``pip install -e``)
    resolves, its dicts carry ``_scope_='mmdetcon'``, and they build: model, dataset, sampler, collate_fn."""
    import mmdetcon
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmdetcon.engine.runner import MMDetConRunner
    from mmdetcon.registry import MODELS
    mim = osp.join(osp.dirname(mmdetcon.__file__), '.mim')
    assert osp.isfile(osp.join(mim, 'model-index.yml')), \
        f'{mim} is missing: reinstall the checkout with `pip install --no-deps -e .` (setup.py links it)'
    cfg = Config.fromfile(_user_config(tmp_path, DETCON_SHAPES))
    bases = [line for line in cfg.text.splitlines() if line.startswith('/')]
    assert osp.join(mim, 'configs', DETCON_SHAPES) in bases, bases
    assert cfg.model._scope_ == 'mmdetcon' and cfg.train_dataloader.collate_fn._scope_ == 'mmdetcon'
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        loader_cfg = cfg.train_dataloader
        loader_cfg.dataset.update(data_root=shapes_root, num_images=16)
        loader_cfg.update(batch_size=2, num_workers=0, persistent_workers=False)
        batch = next(iter(MMDetConRunner.build_dataloader(loader_cfg, seed=0)))
    assert type(model).__name__ == 'DetConB'
    assert len(batch['inputs']) == 2 and batch['inputs'][0].shape[0] == 2  # two views of 2 images


def test_mmengine_hub_builds_an_mmdetcon_model():
    """``mmengine.hub.get_model('mmdetcon::...')``: the metafile's Config, ``mmdetcon.utils.register_all_modules``."""
    import mmdetcon  # noqa: F401
    from mmengine.hub import get_model
    model = get_model('mmdetcon::detcon/detcon-s_resnet18_1xb32-lars-coslr-5e_shapes.py')
    assert type(model).__name__ == 'DetConS' and model.backbone.depth == 18


def test_runner_gives_inherited_dicts_the_configs_default_scope(tmp_path, monkeypatch):
    """MMDetConRunner.from_cfg hands mmengine a copy whose ``_scope_='mmdetcon'`` marks are the config's default
    scope (an mmdet benchmark inherited through ``mmdetcon::`` builds its datasets and transforms in mmdet's)."""
    import mmdetcon  # noqa: F401
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdetcon.engine.runner import MMDetConRunner
    from mmdetcon.utils.packaging import rescope

    def count(cfg, scope: str) -> int:
        return repr(cfg.to_dict()).count(f"'_scope_': '{scope}'")

    cfg = Config.fromfile(_user_config(tmp_path, DETCON_SHAPES))
    cfg.default_scope = 'mmdet'  # as in an mmdet benchmark
    marks = count(cfg, 'mmdetcon')
    assert marks >= 10 and count(cfg, 'mmdet') == 0
    monkeypatch.setattr(Runner, 'from_cfg', classmethod(lambda cls, built: built))  # what mmengine would build
    built = MMDetConRunner.from_cfg(cfg)
    assert count(built, 'mmdetcon') == 0 and count(built, 'mmdet') == marks
    assert count(cfg, 'mmdetcon') == marks, "the caller's config is left as it was"
    nested = {'a': [{'type': 'X', '_scope_': 'mmdetcon', 'b': ({'_scope_': 'mmdetcon'},)}, {'_scope_': 'mmdet'}]}
    assert rescope(nested, None) == 2
    assert nested == {'a': [{'type': 'X', 'b': ({},)}, {'_scope_': 'mmdet'}]}


# ---------------------------------------------------------------------------------------------- the wheel


@pytest.fixture(scope='module')
def installed_wheel(tmp_path_factory) -> dict:
    """The working tree (tracked and untracked, not ignored) built as a wheel and an sdist, the wheel installed
    into a throwaway target."""
    work = tmp_path_factory.mktemp('packaging')
    src, dist, target = work / 'src', work / 'dist', work / 'target'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split('\0')
    for rel in filter(None, files):
        if osp.isfile(osp.join(ROOT, rel)):
            os.makedirs(osp.dirname(src / rel), exist_ok=True)
            with open(osp.join(ROOT, rel), 'rb') as fin, open(src / rel, 'wb') as fout:
                fout.write(fin.read())
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run(pip + ['wheel', '.', '--no-deps', '--no-build-isolation', '-w', str(dist)], cwd=src,
                   check=True, capture_output=True)
    subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(dist)], cwd=src, check=True,
                   capture_output=True)
    wheel, = glob.glob(str(dist / '*.whl'))
    subprocess.run(pip + ['install', '--no-deps', '--target', str(target), wheel], check=True, capture_output=True)
    sdist, = glob.glob(str(dist / '*.tar.gz'))
    return dict(wheel=wheel, sdist=sdist, target=str(target), work=work, src=str(src))


def test_wheel_and_sdist_carry_configs_tools_and_model_index(installed_wheel):
    with zipfile.ZipFile(installed_wheel['wheel']) as z:
        names = set(z.namelist())
    mim = 'mmdetcon/.mim/'
    for member in ('configs/' + DETCON_SHAPES, 'tools/train.py', 'tools/test.py', 'model-index.yml',
                   'configs/detcon/metafile.yml', 'configs/_base_/default_runtime.py'):
        assert mim + member in names, member
    shipped = set(_configs('')) | {'model-index.yml'}
    assert {n[len(mim):] for n in names if n.startswith(mim + 'configs/') and n.endswith('.py')} == \
        {p for p in shipped if p.endswith('.py')}, 'the wheel holds exactly the configs of the tree'
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]
    with tarfile.open(installed_wheel['sdist']) as t:
        members = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    assert {'configs/' + DETCON_SHAPES, 'tools/train.py', 'model-index.yml', 'setup.py'} <= members
    assert not [n for n in members if n.startswith('mmdetcon/.mim')], 'the sdist rebuilds .mim, it does not ship it'


def test_editable_build_links_mim_into_the_checkout(installed_wheel, tmp_path):
    """``pip install -e .`` (setuptools' PEP 660 hook) links mmdetcon/.mim/* to the checkout's files."""
    src = installed_wheel['src']
    build = f'from setuptools import build_meta; build_meta.build_editable({str(tmp_path)!r})'
    subprocess.run([sys.executable, '-c', build], cwd=src, check=True, capture_output=True)
    for item in ('configs', 'tools', 'model-index.yml'):
        link = osp.join(src, 'mmdetcon', '.mim', item)
        assert osp.islink(link) and osp.realpath(link) == osp.realpath(osp.join(src, item)), item
    assert osp.isfile(osp.join(src, 'mmdetcon', '.mim', 'configs', DETCON_SHAPES))


def test_mim_train_and_test_run_from_the_installed_wheel(installed_wheel, shapes_root):
    """In a clean process whose mmdetcon is the wheel's: ``mim train mmdetcon CONFIG`` trains a user's config
    that inherits ``mmdetcon::`` (read from the wheel's copy, which carries a marker) for 2 iterations on CPU,
    and ``mim test mmdetcon`` evaluates its checkpoint with a benchmark config found by name in the wheel."""
    pytest.importorskip('mim', reason='openmim is installed by requirements/tests.txt')
    target, work = installed_wheel['target'], installed_wheel['work']
    base = osp.join(target, 'mmdetcon', '.mim', 'configs', DETCON_SHAPES)
    with open(base, 'a') as f:
        f.write("\npackaging_probe = 'read from the installed wheel'\n")
    user = _user_config(work, DETCON_SHAPES, train_cfg='dict(max_epochs=1)')
    env = dict(os.environ, PYTHONPATH=target, OMP_NUM_THREADS='1')  # mmdetcon from the wheel only
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    mim = [osp.join(osp.dirname(sys.executable), 'mim')]
    train_dir = str(work / 'train')
    proc = subprocess.run(mim + ['train', 'mmdetcon', user, '--work-dir', train_dir, '--no-persistent-workers',
                                 '--cfg-options', f'train_dataloader.dataset.data_root={shapes_root}',
                                 'train_dataloader.dataset.num_images=8', 'train_dataloader.batch_size=4',
                                 'train_dataloader.num_workers=0', 'default_hooks.logger.interval=1',
                                 'custom_hooks=[]'],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert osp.join(target, 'mmdetcon', '.mim', 'tools', 'train.py') in log, log[-4000:]
    assert 'Epoch(train) [1][2/2]' in log, log[-4000:]
    with open(osp.join(train_dir, 'user_cfg.py')) as f:
        assert 'read from the installed wheel' in f.read(), 'the mmdetcon:: base did not come from the wheel'
    checkpoint = osp.join(train_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)

    proc = subprocess.run(mim + ['test', 'mmdetcon', PROBE, '--checkpoint', checkpoint,
                                 '--work-dir', str(work / 'test'), '--cfg-options',
                                 f'test_dataloader.dataset.data_root={shapes_root}',
                                 'test_dataloader.dataset.split=train', 'test_dataloader.dataset.num_images=16',
                                 'test_dataloader.batch_size=8', 'test_dataloader.num_workers=0',
                                 'test_dataloader.persistent_workers=False', 'model.backbone.init_cfg=None'],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    found = osp.join(target, 'mmdetcon', '.mim', 'configs', 'benchmarks', 'mmpretrain', PROBE)
    assert f'will use {found} instead' in log, log[-4000:]
    assert re.search(r'Epoch\(test\) \[2/2\].*multi-label/mAP: \d', log), log[-4000:]


def test_mim_slurm_launch_runs_the_wheels_train_script(installed_wheel, tmp_path):
    """``mim train mmdetcon CONFIG --launcher slurm`` hands srun the wheel's train script and the launcher (a
    stand-in srun records the command: slurm itself needs a cluster and CUDA)."""
    pytest.importorskip('mim', reason='openmim is installed by requirements/tests.txt')
    target = installed_wheel['target']
    bindir, record = tmp_path / 'bin', tmp_path / 'srun.args'
    bindir.mkdir()
    (bindir / 'srun').write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    (bindir / 'srun').chmod(0o755)
    user = _user_config(tmp_path, DETCON_SHAPES)
    env = dict(os.environ, PYTHONPATH=target, PATH=f'{bindir}{os.pathsep}{os.environ["PATH"]}')
    proc = subprocess.run([osp.join(osp.dirname(sys.executable), 'mim'), 'train', 'mmdetcon', user, '--launcher',
                           'slurm', '--gpus', '16', '--gpus-per-node', '8', '-p', 'gpu', '--work-dir', 'w'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    args = record.read_text().splitlines()
    script = osp.join(target, 'mmdetcon', '.mim', 'tools', 'train.py')
    assert args[:6] == ['-p', 'gpu', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8', '--cpus-per-task=2'], args
    assert args[args.index(script) + 1:] == [user, '--launcher', 'slurm', '--work-dir', 'w'], args
