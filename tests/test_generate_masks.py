"""Offline FH mask generation: library (mmdetcon.utils.masks_io) and tools/masks/generate_masks.py."""
import filecmp
import importlib.util
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import felzenszwalb

from mmdetcon.utils import masks_io
from mmdetcon.utils.cli import UserError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'masks', 'generate_masks.py')
# Small FH settings so that the painted regions of 64-96 px images become several segments.
FH_ARGS = ['--scale', '50', '--sigma', '0.5', '--min-size', '20']
NUM_GOOD = 11
CORRUPT = 'bad/corrupt.jpg'


def _load_tool():
    spec = importlib.util.spec_from_file_location('generate_masks_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # worker processes unpickle functions by module name
    spec.loader.exec_module(module)
    return module


gm = _load_tool()


def _painted(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A flat background with 3-5 flat rectangles of distinct colours, plus mild noise."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    for _ in range(rng.integers(3, 6)):
        y0, x0 = rng.integers(0, height - 16), rng.integers(0, width - 16)
        y1, x1 = y0 + rng.integers(12, height - y0 + 1), x0 + rng.integers(12, width - x0 + 1)
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    noise = rng.integers(-3, 4, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _run(img_root, out_root, *extra, expect=0):
    args = gm.parse_args(['--img-root', str(img_root), '--out-root', str(out_root), '--no-progress',
                          *FH_ARGS, *map(str, extra)])
    code = gm.main(args)
    assert code == expect
    return args


def _summary(out_root, name='summary.json'):
    with open(osp.join(out_root, name)) as f:
        return json.load(f)


def _masks(out_root):
    found = {}
    for dirpath, _, names in os.walk(out_root):
        for name in names:
            if name.endswith('.png'):
                path = osp.join(dirpath, name)
                found[osp.relpath(path, out_root)] = path
    return found


def _assert_same_tree(a, b):
    ma, mb = _masks(a), _masks(b)
    assert sorted(ma) == sorted(mb)
    for rel in ma:
        assert filecmp.cmp(ma[rel], mb[rel], shallow=False), rel


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """11 painted images (jpg/png, two folders, 64-96 px) + 1 corrupt .jpg, and a reference run."""
    root = tmp_path_factory.mktemp('fh')
    img_root = root / 'images'
    rng = np.random.default_rng(0)
    for i in range(NUM_GOOD):
        height, width = (int(v) for v in rng.integers(64, 97, 2))
        folder = img_root / ('cls_a' if i % 2 else 'cls_b')
        folder.mkdir(parents=True, exist_ok=True)
        ext = '.JPEG' if i % 3 == 0 else '.png'
        Image.fromarray(_painted(rng, height, width)).save(folder / f'img{i:02d}{ext}')
    (img_root / 'bad').mkdir()
    (img_root / CORRUPT).write_bytes(b'\xff\xd8 this is not a jpeg at all' * 10)
    ref = root / 'ref'
    _run(img_root, ref, '--workers', '0')
    return root, img_root, ref


def test_fh_ids_equal_skimage(dataset):
    root, img_root, ref = dataset
    rel = 'cls_a/img01.png'
    rgb = np.asarray(Image.open(img_root / rel).convert('RGB'))
    expected = felzenszwalb(rgb, scale=50, sigma=0.5, min_size=20)
    ids = masks_io.fh_segment(rgb, 50, 0.5, 20)
    assert ids.dtype == np.int32 and np.array_equal(ids, expected)
    stored = masks_io.load_id_map(str(ref / 'cls_a' / 'img01.png'))
    assert stored.dtype == np.uint8 and np.array_equal(stored, expected)
    assert expected.max() >= 2  # the painted regions give several segments
    # official parameters on a real photo (the library default)
    from skimage.data import chelsea
    photo = chelsea()[::2, ::2].copy()
    assert np.array_equal(masks_io.fh_segment(photo),
                          felzenszwalb(photo, scale=1000, sigma=0.8, min_size=1000))


def test_reference_run_summary(dataset):
    root, img_root, ref = dataset
    s = _summary(ref)
    assert s['images_total'] == NUM_GOOD + 1
    assert s['processed'] == NUM_GOOD and s['failed'] == 1 and s['skipped_existing'] == 0
    assert s['failures'][0]['path'] == CORRUPT and s['failures'][0]['error']
    masks = _masks(ref)
    assert len(masks) == NUM_GOOD and not osp.exists(ref / 'bad' / 'corrupt.png')
    assert sum(int(v) for v in s['segments']['histogram'].values()) == NUM_GOOD
    assert s['bytes_written'] == sum(osp.getsize(p) for p in masks.values())
    assert s['uint16_maps'] == 0 and s['parameters']['min_size'] == 20
    # masks mirror the tree and have their image's size
    for i in range(NUM_GOOD):
        folder = 'cls_a' if i % 2 else 'cls_b'
        ext = '.JPEG' if i % 3 == 0 else '.png'
        width, height = Image.open(img_root / folder / f'img{i:02d}{ext}').size
        assert masks_io.load_id_map(str(ref / folder / f'img{i:02d}.png')).shape == (height, width)
    # a second run skips everything and rewrites nothing
    before = {p: os.stat(p).st_mtime_ns for p in masks.values()}
    _run(img_root, ref, '--workers', '0')
    s2 = _summary(ref)
    assert s2['skipped_existing'] == NUM_GOOD and s2['processed'] == 0 and s2['failed'] == 1
    assert {p: os.stat(p).st_mtime_ns for p in masks.values()} == before


def test_strict_exit_code(dataset, tmp_path):
    root, img_root, ref = dataset
    _run(img_root, tmp_path / 'out', '--workers', '0', '--strict', expect=1)


def test_one_vs_two_workers_identical(dataset, tmp_path):
    root, img_root, ref = dataset
    _run(img_root, tmp_path / 'w1', '--workers', '1')
    _run(img_root, tmp_path / 'w2', '--workers', '2')
    _assert_same_tree(tmp_path / 'w1', ref)
    _assert_same_tree(tmp_path / 'w2', ref)
    assert _summary(tmp_path / 'w2')['failures'][0]['path'] == CORRUPT


def test_shards_cover_every_image_once(dataset, tmp_path):
    root, img_root, ref = dataset
    _run(img_root, tmp_path / 's0', '--shard', '0/2', '--workers', '0')
    _run(img_root, tmp_path / 's1', '--shard', '1/2', '--workers', '0')
    m0, m1 = set(_masks(tmp_path / 's0')), set(_masks(tmp_path / 's1'))
    assert m0 and m1 and not (m0 & m1)
    assert m0 | m1 == set(_masks(ref))
    s0 = _summary(tmp_path / 's0', 'summary.shard0-of-2.json')
    s1 = _summary(tmp_path / 's1', 'summary.shard1-of-2.json')
    assert s0['images_total'] + s1['images_total'] == NUM_GOOD + 1
    assert s0['failed'] + s1['failed'] == 1
    # both shards into one folder = the unsharded result
    _run(img_root, tmp_path / 'both', '--shard', '0/2', '--workers', '0')
    _run(img_root, tmp_path / 'both', '--shard', '1/2', '--workers', '0')
    _assert_same_tree(tmp_path / 'both', ref)
    for bad in ('2/2', '1', 'a/b', '0/0', '-1/2'):
        with pytest.raises(UserError, match='--shard'):
            gm.parse_shard(bad)


def test_interrupted_run_resumes_identically(dataset, tmp_path):
    root, img_root, ref = dataset
    out = tmp_path / 'killed'
    env = dict(os.environ, MMDETCON_FH_THROTTLE_S='0.4')
    cmd = [sys.executable, TOOL, '--img-root', str(img_root), '--out-root', str(out),
           '--workers', '1', '--no-progress', *FH_ARGS]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while len(_masks(out)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, 'the tool produced no mask in time'
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job, as a scheduler would
        proc.wait()
    done = len(_masks(out))
    assert 2 <= done < NUM_GOOD, 'the run was not interrupted mid-way'
    # what a kill during a write leaves behind: a temporary file, never a partial mask
    stale = out / 'cls_b' / 'img00.png.tmp-999999'
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b'\x89PNG partial')
    _run(img_root, out, '--workers', '2')
    s = _summary(out)
    assert s['skipped_existing'] >= done and s['processed'] == NUM_GOOD - s['skipped_existing']
    assert s['stale_tmp_removed'] >= 1
    _assert_same_tree(out, ref)
    leftovers = [n for _, _, names in os.walk(out) for n in names if '.tmp-' in n]
    assert leftovers == []


def test_uint16_maps(tmp_path):
    # save/load directly: > 255 ids are stored as uint16, never wrapped
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 300, (20, 30)).astype(np.int32)
    ids[0, 0] = 299
    path = str(tmp_path / 'direct' / 'm.png')
    nbytes = masks_io.save_id_map(path, ids)
    assert nbytes == osp.getsize(path) and os.listdir(tmp_path / 'direct') == ['m.png']
    back = masks_io.load_id_map(path)
    assert back.dtype == np.uint16 and np.array_equal(back, ids)
    masks_io.save_id_map(path, ids % 256)
    small = masks_io.load_id_map(path)
    assert small.dtype == np.uint8 and np.array_equal(small, ids % 256)
    for bad in (np.full((2, 2), -1), np.full((2, 2), 65536), np.zeros((2, 2, 3), int), np.zeros((2, 2))):
        with pytest.raises(ValueError):
            masks_io.save_id_map(str(tmp_path / 'bad.png'), bad)
    # through the tool: a 20x20 grid of distinct flat colours -> 400 segments
    img_root = tmp_path / 'grid'
    img_root.mkdir()
    cell = np.arange(400).reshape(20, 20)
    colours = np.stack([cell % 7 * 36, cell // 7 % 7 * 36, cell // 49 * 28], -1).astype(np.uint8)
    grid = np.repeat(np.repeat(colours, 4, 0), 4, 1)
    assert len(np.unique(grid.reshape(-1, 3), axis=0)) == 400
    Image.fromarray(grid).save(img_root / 'grid.png')
    out = tmp_path / 'grid_out'
    assert gm.main(gm.parse_args(['--img-root', str(img_root), '--out-root', str(out), '--workers', '0',
                                  '--no-progress', '--scale', '1', '--sigma', '0',
                                  '--min-size', '1'])) == 0
    stored = masks_io.load_id_map(str(out / 'grid.png'))
    expected = felzenszwalb(grid, scale=1, sigma=0, min_size=1)
    assert expected.max() == 399
    assert stored.dtype == np.uint16 and np.array_equal(stored, expected)
    s = _summary(out)
    assert s['uint16_maps'] == 1 and s['segments']['max'] == 400


def test_verify(dataset, tmp_path):
    root, img_root, ref = dataset
    out = tmp_path / 'v'
    _run(img_root, out, '--workers', '0')
    # the corrupt image has no mask
    _run(img_root, out, '--verify', '--workers', '0', expect=1)
    problems = {p['path']: p['problem'] for p in _summary(out, 'verify.json')['problems']}
    assert list(problems) == [CORRUPT] and 'missing' in problems[CORRUPT]
    ann = tmp_path / 'list.txt'
    good = sorted(gm.list_images(str(img_root)))
    good.remove(CORRUPT)
    ann.write_text(''.join(f'{rel} {i}\n' for i, rel in enumerate(good)) + '\n')
    _run(img_root, out, '--verify', '--workers', '2', '--ann-file', ann)
    assert _summary(out, 'verify.json')['problems'] == []
    # a mask of the wrong size, and a missing one
    masks_io.save_id_map(str(out / 'cls_a' / 'img01.png'), np.zeros((10, 12), np.int32))
    os.remove(out / 'cls_b' / 'img02.png')
    _run(img_root, out, '--verify', '--workers', '0', '--ann-file', ann, expect=1)
    problems = {p['path']: p['problem'] for p in _summary(out, 'verify.json')['problems']}
    assert set(problems) == {'cls_a/img01.png', 'cls_b/img02.png'}
    assert 'size 10x12' in problems['cls_a/img01.png'] and 'missing' in problems['cls_b/img02.png']


def test_bad_inputs(dataset, tmp_path):
    root, img_root, ref = dataset
    missing = tmp_path / 'nowhere'
    with pytest.raises(UserError, match=str(missing)):
        gm.main(gm.parse_args(['--img-root', str(missing), '--out-root', str(tmp_path / 'o')]))
    with pytest.raises(UserError, match='list.txt'):
        _run(img_root, tmp_path / 'o', '--ann-file', tmp_path / 'list.txt')
    # resuming into a folder made with other FH settings is refused
    with pytest.raises(UserError, match='min_size'):
        gm.main(gm.parse_args(['--img-root', str(img_root), '--out-root', str(ref), '--no-progress',
                               '--scale', '50', '--sigma', '0.5', '--min-size', '21']))
    # two images that would share one mask
    clash = tmp_path / 'clash'
    clash.mkdir()
    for ext in ('.jpg', '.png'):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(clash / f'x{ext}')
    with pytest.raises(UserError, match='x.png'):
        _run(clash, tmp_path / 'clash_out')
    # the command line reports the missing root in one line
    res = subprocess.run([sys.executable, TOOL, '--img-root', str(missing), '--out-root',
                          str(tmp_path / 'o')], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1 and str(missing) in res.stderr
    assert 'Traceback' not in res.stderr


def test_read_rgb_formats(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)
    grey16 = rng.integers(0, 65536, (9, 7)).astype(np.uint16)
    Image.fromarray(rgb[..., 0]).save(tmp_path / 'g.png')
    Image.fromarray(np.dstack([rgb, np.full((9, 7), 7, np.uint8)])).save(tmp_path / 'a.png')
    Image.fromarray(rgb).convert('CMYK').save(tmp_path / 'c.jpg', quality=100)
    import cv2
    cv2.imwrite(str(tmp_path / 'g16.png'), grey16)
    for name in ('g.png', 'a.png', 'c.jpg', 'g16.png'):
        out = masks_io.read_rgb(str(tmp_path / name))
        assert out.shape == (9, 7, 3) and out.dtype == np.uint8, name
    assert np.array_equal(masks_io.read_rgb(str(tmp_path / 'g.png')), np.repeat(rgb[..., :1], 3, 2))
    assert np.array_equal(masks_io.read_rgb(str(tmp_path / 'a.png')), rgb)
    assert np.array_equal(masks_io.read_rgb(str(tmp_path / 'g16.png'))[..., 1],
                          (grey16 // 256).astype(np.uint8))
    assert np.abs(masks_io.read_rgb(str(tmp_path / 'c.jpg')).astype(int) - rgb).mean() < 12
    # EXIF orientation 6 (rotate 90): the decoded image and the header size are both transposed
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / 'rot.jpg', exif=exif, quality=100)
    assert masks_io.read_rgb(str(tmp_path / 'rot.jpg')).shape == (7, 9, 3)
    assert masks_io.image_size(str(tmp_path / 'rot.jpg')) == (7, 9)
    assert masks_io.image_size(str(tmp_path / 'rot.jpg'), exif_orientation=False) == (9, 7)
    assert masks_io.read_rgb(str(tmp_path / 'rot.jpg'), exif_orientation=False).shape == (9, 7, 3)
    with pytest.raises(ValueError, match='HxWx3 uint8'):
        masks_io.fh_segment(rgb[..., 0])
    with pytest.raises(FileNotFoundError, match='nope.png'):
        masks_io.load_id_map(str(tmp_path / 'nope.png'))


def test_short_side_option():
    from skimage.data import coffee
    rgb = coffee()  # 400x600
    ids = masks_io.fh_segment(rgb, short_side=200)
    assert ids.shape == rgb.shape[:2] and ids.dtype == np.int32
    # the same as segmenting a half-size copy with a quarter of min_size, then nearest-upsampling
    import cv2
    small = cv2.resize(rgb, (300, 200), interpolation=cv2.INTER_AREA)
    expected = felzenszwalb(small, scale=1000, sigma=0.8, min_size=250)
    assert np.array_equal(ids[::2, ::2], expected)
    assert np.array_equal(ids[1::2, 1::2], expected)
    # images already small enough are segmented as they are
    assert np.array_equal(masks_io.fh_segment(small, short_side=256), felzenszwalb(
        small, scale=1000, sigma=0.8, min_size=1000))


def test_opencv_backend():
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[:, 25:] = 200
    if not masks_io.opencv_fh_available():
        with pytest.raises(ImportError, match='pip install opencv-contrib-python-headless'):
            masks_io.fh_segment(rgb, 100, 0.5, 20, backend='opencv')
        return
    ids = masks_io.fh_segment(rgb, 100, 0.5, 20, backend='opencv')
    assert ids.dtype == np.int32 and ids.shape == (40, 50)
    # the flat halves are one segment each (the blurred boundary columns may form their own)
    assert len(np.unique(ids[:, :20])) == 1 and len(np.unique(ids[:, 30:])) == 1
    assert ids[0, 0] != ids[0, 49]


def test_adjusted_rand_index_matches_pair_counting():
    spec = importlib.util.spec_from_file_location(
        'bench_masks_tool', osp.join(ROOT, 'tools', 'analysis', 'bench_masks.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def brute(a, b):  # pair-counting form: agreements/disagreements over all pixel pairs
        n11 = n10 = n01 = n00 = 0
        for i in range(len(a)):
            for j in range(i + 1, len(a)):
                sa, sb = a[i] == a[j], b[i] == b[j]
                n11 += sa and sb
                n10 += sa and not sb
                n01 += sb and not sa
                n00 += not sa and not sb
        return 2.0 * (n00 * n11 - n01 * n10) / ((n00 + n01) * (n01 + n11) + (n00 + n10) * (n10 + n11))

    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.integers(0, 4, 40), rng.integers(0, 3, 40)
        b[:20] = a[:20]  # partly agreeing
        assert bench.adjusted_rand_index(a, b) == pytest.approx(brute(a, b), abs=1e-12)
    a = rng.integers(0, 5, 40)
    relabelled = np.array([7, 3, 9, 0, 250])[a]
    assert bench.adjusted_rand_index(a.reshape(5, 8), relabelled.reshape(5, 8)) == pytest.approx(1.0)
    assert bench.adjusted_rand_index(np.zeros(9), np.zeros(9)) == 1.0


def test_masks_stored_under_the_image_root_are_not_images(tmp_path):
    rng = np.random.default_rng(4)
    for name in ('a.png', 'b.jpg'):
        Image.fromarray(_painted(rng, 64, 64)).save(tmp_path / name)
    out = tmp_path / 'fh_masks'
    for _ in range(2):
        _run(tmp_path, out, '--workers', '0')
        assert _summary(out)['images_total'] == 2
    assert sorted(_masks(out)) == ['a.png', 'b.png']


def test_entries_leaving_the_roots_are_refused_and_nothing_is_written_outside(tmp_path):
    rng = np.random.default_rng(5)
    base = tmp_path / 'a' / 'b'
    img_root, out_root, elsewhere = base / 'images', base / 'masks', tmp_path / 'elsewhere'
    for folder in (img_root / 'ok', img_root / 'linked', out_root, elsewhere):
        folder.mkdir(parents=True)
    for path in (img_root / 'ok' / 'x.png', img_root / 'linked' / 'y.png', tmp_path / 'a' / 'outside.jpg'):
        Image.fromarray(_painted(rng, 64, 64)).save(path)
    os.symlink(elsewhere, out_root / 'linked')  # a folder under --out-root that leads outside it
    absolute = str(img_root / 'ok' / 'x.png')
    ann = tmp_path / 'list.txt'
    ann.write_text(f'ok/x.png 0\n../../outside.jpg 1\n{absolute} 2\nlinked/y.png 3\n')
    before = sorted(str(p) for p in tmp_path.rglob('*'))
    _run(img_root, out_root, '--workers', '0', '--ann-file', ann)
    failures = {f['path']: f['error'] for f in _summary(out_root)['failures']}
    assert set(failures) == {'../../outside.jpg', absolute, 'linked/y.png'}, failures
    assert 'leaves --img-root' in failures['../../outside.jpg'] and 'leaves --img-root' in failures[absolute]
    assert 'outside --out-root' in failures['linked/y.png']
    created = sorted(set(str(p) for p in tmp_path.rglob('*')) - set(before))
    assert all(p.startswith(str(out_root) + os.sep) for p in created), created
    assert created and not list(elsewhere.iterdir()) and not (tmp_path / 'a' / 'outside.png').exists()
    assert osp.isfile(out_root / 'ok' / 'x.png')
    # with worker processes too
    out2 = base / 'masks2'
    out2.mkdir()
    os.symlink(elsewhere, out2 / 'linked')
    _run(img_root, out2, '--workers', '2', '--ann-file', ann)
    assert len(_summary(out2)['failures']) == 3 and not list(elsewhere.iterdir())


def test_worker_pool_never_forks_the_parent():
    # A forked child inherits the parent's locks (OpenCV's thread pool, tqdm's monitor) without their threads.
    from mmdetcon.utils import mask_workers
    assert mask_workers.pool_context().get_start_method() in ('forkserver', 'spawn')
