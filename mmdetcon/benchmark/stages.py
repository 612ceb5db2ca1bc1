"""Resumable stages: a directory whose ``done.json`` (written last, atomically) lists its files.

A stage with a valid marker is reused. A marker whose files are missing or changed size is discarded with a
message and the stage is redone, so a deleted result is never reported from a stale record.
"""
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Tuple

MARKER = 'done.json'


def write_json_atomic(path: str, data) -> None:
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def load_done(stage_dir: str, log: Callable[[str], None] = print) -> Optional[dict]:
    """The record of a finished stage, or None (not finished, or its files were deleted/changed)."""
    marker = osp.join(stage_dir, MARKER)
    if not osp.isfile(marker):
        return None
    try:
        with open(marker) as f:
            done = json.load(f)
        files: Dict[str, int] = done['files']
    except (OSError, ValueError, KeyError, TypeError):
        log(f'{stage_dir}: unreadable {MARKER}; redoing the stage')
        os.remove(marker)
        return None
    bad = [name for name, size in files.items()
           if not osp.isfile(osp.join(stage_dir, name)) or osp.getsize(osp.join(stage_dir, name)) != size]
    if bad:
        log(f'{stage_dir}: finished earlier but {", ".join(sorted(bad))} missing or changed; redoing the stage')
        os.remove(marker)
        return None
    return done['record']


def run_stage(stage_dir: str, work: Callable[[str], Tuple[dict, List[str]]],
              log: Callable[[str], None] = print) -> dict:
    """Reuse the stage at ``stage_dir`` or run ``work(stage_dir) -> (record, files)`` in a fresh directory.

    ``files`` are paths relative to ``stage_dir`` that the record depends on; the marker is written last.
    """
    done = load_done(stage_dir, log)
    if done is not None:
        return dict(done, reused=True)
    if osp.isdir(stage_dir):
        shutil.rmtree(stage_dir)
    os.makedirs(stage_dir)
    record, files = work(stage_dir)
    for name in files:
        if not osp.isfile(osp.join(stage_dir, name)):
            raise FileNotFoundError(f'stage {stage_dir} did not write {name}')
    write_json_atomic(osp.join(stage_dir, MARKER), dict(
        files={name: osp.getsize(osp.join(stage_dir, name)) for name in files}, record=record))
    return dict(record, reused=False)
