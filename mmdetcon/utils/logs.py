"""Read back what mmengine's LocalVisBackend logged (``<work_dir>/<timestamp>/vis_data/scalars.json``)."""
import glob
import json
import os.path as osp
from typing import Iterator


def logged_scalars(work_dir: str) -> Iterator[dict]:
    """Every logged row of every run under ``work_dir``, runs in timestamp order (a resumed run comes last)."""
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                yield json.loads(line)
