"""requirements/runtime.txt installs into an existing environment (ranges; no torch pin), and
requirements/constraints.txt pins exactly what this environment runs."""
import importlib.metadata as metadata
import os.path as osp
import tomllib
from typing import Dict

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT


def _read(name: str) -> Dict[str, Requirement]:
    reqs = {}
    with open(osp.join(ROOT, 'requirements', name)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                req = Requirement(line)
                reqs[canonicalize_name(req.name)] = req
    return reqs


def _pin(req: Requirement) -> str:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == '==', f'{req}: a constraint pins one exact version'
    return specs[0].version


def test_runtime_requirements_are_ranges_that_keep_the_users_torch():
    runtime = _read('runtime.txt')
    for name in ('torch', 'torchvision'):
        ops = {spec.operator for spec in runtime[name].specifier}
        assert ops == {'>='}, f'{runtime[name]}: a lower bound only, so an installed CUDA build is kept'
    for name in ('mmengine', 'mmpretrain', 'mmdet'):
        ops = sorted(spec.operator for spec in runtime[name].specifier)
        assert ops == ['<', '>='], f'{runtime[name]}: bounded by the releases that work'
    assert not [str(r) for r in runtime.values() if any(s.operator in ('==', '===') for s in r.specifier)]
    with open(osp.join(ROOT, 'requirements.txt')) as f:
        assert '-r requirements/runtime.txt' in f.read()


def test_every_runtime_requirement_has_a_constraint_inside_its_range():
    runtime, constraints = _read('runtime.txt'), _read('constraints.txt')
    for name, req in runtime.items():
        assert name in constraints, f'{req} has no pin in requirements/constraints.txt'
        pinned = _pin(constraints[name])
        assert req.specifier.contains(pinned, prereleases=True), f'{constraints[name]} is outside {req}'
    with open(osp.join(ROOT, 'pyproject.toml'), 'rb') as f:
        project = tomllib.load(f)['project']
    declared = list(project.get('dependencies', []))
    for extra in project.get('optional-dependencies', {}).values():
        declared += extra
    for line in declared:
        req = Requirement(line)
        if canonicalize_name(req.name) in constraints:
            pinned = _pin(constraints[canonicalize_name(req.name)])
            assert req.specifier.contains(pinned, prereleases=True), f'pyproject {req} excludes {pinned}'


def test_constraints_are_what_this_environment_runs():
    constraints = _read('constraints.txt')
    found = {}
    for name, req in constraints.items():
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        assert req.specifier.contains(found[name], prereleases=True), \
            f'installed {name} {found[name]}, pinned {req} (`make venv` installs the pins)'
    one_mmcv = [n for n in ('mmcv', 'mmcv-lite') if n in found]
    assert len(one_mmcv) == 1, f'exactly one of mmcv / mmcv-lite is installed: {one_mmcv}'
    missing = set(constraints) - set(found) - {'mmcv', 'mmcv-lite'}
    assert not missing, f'pinned but not installed: {sorted(missing)}'
