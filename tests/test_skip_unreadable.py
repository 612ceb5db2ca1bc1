"""Unreadable images and id maps are skipped while training (counted across DataLoader workers, logged,
limited); images generate_masks.py listed as failed are left out; a mask of the wrong size still fails."""
import json
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from PIL import Image

from conftest import ROOT, run_tool
from mmdetcon.engine.hooks.skipped_files_hook import skipped_in_batch
from mmdetcon.registry import DATASETS
from mmdetcon.utils import masks_io

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadIdMap'), dict(type='PackInputs')]
BAD_IMAGE, BAD_MASK = '000003.png', '000007.png'


@pytest.fixture
def folder(shapes_root, tmp_path):
    """16 shapes images with blocky id maps of their size; one image and one id map are garbage."""
    images, masks = tmp_path / 'images', tmp_path / 'masks'
    shutil.copytree(osp.join(shapes_root, 'train', 'images'), images)
    masks.mkdir()
    for name in sorted(os.listdir(images)):
        w, h = Image.open(images / name).size
        ids = (np.arange(h)[:, None] // 32) * 4 + np.arange(w)[None, :] // 32
        masks_io.save_id_map(str(masks / name), ids)
    (images / BAD_IMAGE).write_bytes(b'this is not an image')
    (masks / BAD_MASK).write_bytes(b'\x89PNG truncated')
    return images, masks


def _dataset(images, masks, **kwargs):
    return DATASETS.build(dict(type='ImageMaskDataset', data_prefix=str(images), mask_root=str(masks),
                               pipeline=PIPELINE, **kwargs))


def test_unreadable_files_are_skipped_and_counted(folder):
    ds = _dataset(*folder)
    np.random.seed(0)
    items = [ds[i] for i in range(len(ds))]
    skipped = [item['data_samples'].metainfo['skipped_files'] for item in items]
    assert sum(skipped) == 2 and skipped[3] >= 1 and skipped[7] >= 1
    paths = [item['data_samples'].metainfo['img_path'] for item in items]
    assert not any(p.endswith((BAD_IMAGE, BAD_MASK)) for p in paths)
    # In test mode nothing is skipped.
    with pytest.raises(Exception, match=BAD_IMAGE):
        _dataset(*folder, test_mode=True)[3]


def test_counts_cross_dataloader_workers(folder):
    ds = _dataset(*folder)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=default_collate)
    assert sum(skipped_in_batch(batch) for batch in loader) == 2


def test_wrong_mask_size_still_fails(folder):
    images, masks = folder
    masks_io.save_id_map(str(masks / '000005.png'), np.zeros((10, 12), np.int32))
    with pytest.raises(ValueError, match='000005.png has size 10x12'):
        _dataset(images, masks)[5]


def test_nothing_readable_ends_with_an_error(folder):
    images, masks = folder
    ds = _dataset(images, masks, max_refetch=5)
    for name in os.listdir(images):
        (images / name).write_bytes(b'')
    with pytest.raises(RuntimeError, match='no usable sample in 6 draws'):
        ds[0]


def test_images_listed_as_failed_are_left_out(folder, tmp_path):
    images, masks = folder
    with open(masks / 'summary.shard1-of-2.json', 'w') as f:
        json.dump({'failures': [{'path': BAD_IMAGE, 'error': 'OSError: cannot identify image'}]}, f)
    assert len(_dataset(images, masks)) == 16  # its mask exists: a later run produced it
    os.remove(masks / BAD_IMAGE)
    paths = [osp.basename(info['img_path']) for info in _dataset(images, masks).load_data_list()]
    assert len(paths) == 15 and BAD_IMAGE not in paths
    assert len(_dataset(images, masks, exclude_failed=False)) == 16
    # The COCO variant, with a hand-written instances json.
    ann = tmp_path / 'instances.json'
    names = sorted(os.listdir(images))
    ann.write_text(json.dumps({'images': [dict(id=i + 1, file_name=n, height=128, width=128)
                                          for i, n in enumerate(names)],
                               'annotations': [], 'categories': [dict(id=1, name='x')]}))
    coco = DATASETS.build(dict(type='CocoMaskDataset', ann_file=str(ann), data_prefix=str(images),
                               mask_root=str(masks), with_anns=False, pipeline=PIPELINE))
    assert len(coco) == 15
    np.random.seed(1)
    assert sum(coco[i]['data_samples'].metainfo['skipped_files'] for i in range(len(coco))) == 1  # BAD_MASK


def _config(tmp_path, images, masks, extra=''):
    base = osp.join(ROOT, 'configs/detcon/detcon-b_resnet18_1xb32-lars-coslr-5e_shapes.py')
    cfg = tmp_path / 'detcon_folder.py'
    cfg.write_text(f"_base_ = ['{base}']\n"
                   f"train_dataloader = dict(batch_size=4, num_workers=2, persistent_workers=False, dataset=dict(\n"
                   f"    _delete_=True, type='ImageMaskDataset', data_prefix='{images}', mask_root='{masks}',\n"
                   f"    pipeline={{{{_base_.train_pipeline}}}}))\n"
                   "train_cfg = dict(max_epochs=1)\ndefault_hooks = dict(logger=dict(interval=1))\n" + extra)
    return str(cfg)


def test_training_skips_logs_and_stops_past_the_limit(folder, tmp_path):
    images, masks = folder
    proc = run_tool(['tools/train.py', _config(tmp_path, images, masks), '--work-dir', str(tmp_path / 'w1')],
                    check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    error = log.strip().splitlines()[-1]
    assert 'unreadable files skipped in epoch 1' in error and 'max_share=0.01' in error, error
    # Allowed up to 20 %: the epoch completes over 2 worker processes, with the files named and counted.
    allow = "custom_hooks = [dict(type='SkippedFilesHook', max_share=0.2)]\n"
    proc = run_tool(['tools/train.py', _config(tmp_path, images, masks, allow), '--work-dir', str(tmp_path / 'w2')])
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [1][4/4]' in log, log[-3000:]
    assert f'skipped unreadable file {images / BAD_IMAGE}' in log and f'{masks / BAD_MASK}' in log, log[-3000:]
    # Draws are counted: each worker avoids files it found unreadable, but another worker's replacement draw
    # may pick one again, so the 2 bad files give 2 skips or a few more - as many as warnings were logged.
    total = re.search(r'epoch 1: skipped (\d+) unreadable files', log)
    assert total and 2 <= int(total.group(1)) <= 6, log[-3000:]
    assert int(total.group(1)) == log.count('skipped unreadable file '), log[-3000:]
    assert f'skipped_files: {total.group(1)}' in log, log[-3000:]


def _hook_worker(rank, port, counts, out_dir):
    import types

    import torch.distributed as dist
    from mmengine.logging import MessageHub
    from mmengine.structures import BaseDataElement

    from mmdetcon.engine.hooks import SkippedFilesHook
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        hub = MessageHub(f'skip-{rank}')
        runner = types.SimpleNamespace(message_hub=hub, epoch=0,
                                       train_dataloader=types.SimpleNamespace(dataset=range(100)))
        hook = SkippedFilesHook(max_share=0.05, sync_interval=2)
        hook.before_train_epoch(runner)
        logged, error = [], None
        try:
            for i, n in enumerate(counts[rank]):
                batch = {'data_samples': [BaseDataElement(metainfo={'skipped_files': n}), BaseDataElement()]}
                hook.after_train_iter(runner, i, batch)
                if 'train/skipped_files' in hub.log_scalars:
                    logged.append(float(hub.get_scalar('train/skipped_files').current()))
            hook.after_train_epoch(runner)
        except RuntimeError as exc:
            error = str(exc)
        torch.save(dict(logged=logged, error=error), osp.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('counts,stops', [([[1, 0, 2, 0], [0, 1, 0, 0]], False), ([[3, 0], [0, 3]], True)])
def test_hook_sums_over_ranks_and_all_stop_together(counts, stops, tmp_path):
    import torch.multiprocessing as mp

    from conftest import free_port
    mp.spawn(_hook_worker, args=(free_port(), counts, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(osp.join(tmp_path, f'rank{r}.pt'), weights_only=True) for r in range(2)]
    assert results[0]['logged'] == results[1]['logged']
    if stops:  # 6 skipped by the 2nd iteration > 5 % of 100 samples: both ranks stop there
        assert all(r['error'] and '6 unreadable files skipped in epoch 1' in r['error'] for r in results)
    else:  # synchronised every 2 iterations: totals 2 then 4 (<= 5), the epoch completes
        assert results[0]['logged'] == [2, 2, 4] and all(r['error'] is None for r in results)
