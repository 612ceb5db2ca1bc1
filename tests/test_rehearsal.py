"""The real-scale plan rehearsed on CPU (``run.py --profile in1k-coco --rehearse``): DetCon-B, BYOL and the random
floor through every step of the plan (FH masks, pretraining with the in1k configs on 2 gloo processes, export,
COCO Mask R-CNN R50-FPN and ImageNet linear evaluation with their evaluators), at the rehearsal's toy size."""
import json
import math
import os.path as osp
import shutil

import numpy as np
import pytest

from conftest import free_port, run_tool, tool_env

def test_polygon_annotations_match_the_mask():
    """Polygons decoded by pycocotools (as mmdet's LoadAnnotations does) give back each instance."""
    from pycocotools import mask as mask_utils

    from mmdetcon.benchmark.rehearsal import polygon_annotations
    instance = np.zeros((60, 80), np.uint16)
    instance[5:25, 10:40] = 1  # a 20 x 30 rectangle
    instance[30:50, 50:70] = 2
    instance[30:50, 5:15] = 2  # instance 2 in two parts
    anns = polygon_annotations(instance, [5, 7])
    assert [a['category_id'] for a in anns] == [5, 7]
    assert anns[0]['bbox'] == [10.0, 5.0, 30.0, 20.0] and anns[0]['area'] == 600
    assert anns[1]['bbox'] == [5.0, 30.0, 65.0, 20.0] and anns[1]['area'] == 400 + 200
    assert [len(a['segmentation']) for a in anns] == [1, 2]
    for k, ann in enumerate(anns, 1):
        drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'], 60, 80))).astype(bool)
        truth = instance == k
        # the contour runs through the boundary pixels' centres: at most a one-pixel rim differs
        assert (drawn & truth).sum() / (drawn | truth).sum() > 0.85
        assert not (drawn & ~truth).any()


def test_rehearsal_detcon_byol_random(tmp_path):
    pytest.importorskip('mmcv.ops', reason='COCO Mask R-CNN needs full mmcv with compiled ops')
    work = tmp_path / 'rehearsal'
    run_tool(['tools/benchmark/run.py', '--profile', 'in1k-coco', '--rehearse', '--work-dir', str(work),
              '--methods', 'detcon-b', 'byol', 'random'], env=tool_env(PORT=str(free_port())), timeout=900)
    with open(work / 'results.json') as f:
        results = json.load(f)
    rows = {r['method']: r for r in results['rows']}
    assert sorted(rows) == ['byol', 'detcon-b', 'random']
    for method, row in rows.items():
        for key in ('box_ap', 'mask_ap', 'linear_top1'):
            assert row[key] is not None and math.isfinite(row[key]), (method, key, row)
        assert 0 <= row['box_ap'] <= 1 and 0 <= row['mask_ap'] <= 1 and 0 <= row['linear_top1'] <= 100
        assert row['complete']
    names = [s['name'] for s in results['steps']]
    kinds = {m: [s['kind'] for s in results['steps'] if s['method'] == m] for m in rows}
    assert kinds == {'detcon-b': ['pretrain', 'export', 'coco', 'linear'],
                     'byol': ['pretrain', 'export', 'coco', 'linear'], 'random': ['coco', 'linear']}, names
    assert all(s['done'] and s['wall_s'] > 0 for s in results['steps'])
    rehearsal = json.loads((work / 'rehearsal.json').read_text())
    assert set(rehearsal['data']) == {'data/imagenet', 'data/coco', 'data/fh-masks'}
    # generate_masks.py wrote one FH mask per training image for the DetCon row
    masks = work / 'data' / 'imagenet' / 'masks_fh'
    lines = (work / 'data' / 'imagenet' / 'meta' / 'train.txt').read_text().split('\n')
    assert all(osp.isfile(masks / (line.split()[0].rsplit('.', 1)[0] + '.png')) for line in lines if line)
    assert (work / 'results.md').read_text().count('\n| ') >= 3
    # the plan's own commands ran: tools/dist_train.sh on 2 processes; the evaluations of the pretrained rows
    # initialised their backbones from the export, with no key left out
    for step in json.loads((work / 'plan.json').read_text()):
        if step['kind'] != 'export':
            assert step['cmd'][:2] == ['bash', 'tools/dist_train.sh'] and step['cmd'][3] == '2', step['cmd']
    for method in ('detcon-b', 'byol'):
        for kind in ('coco', 'linear'):
            log = '\n'.join(f.read_text() for f in (work / method / kind).glob('*/*.log'))
            assert f'load from {work / method / "backbone.pth"}' in log and 'missing keys' not in log, (method, kind)
    shutil.rmtree(work)  # about 2.5 GB of checkpoints; kept when an assertion fails
