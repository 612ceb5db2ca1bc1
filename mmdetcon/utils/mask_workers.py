"""Per-image jobs of offline FH mask generation (``tools/masks/generate_masks.py``) and their process pool.

The pool starts workers with ``forkserver`` (``spawn`` where that is unavailable): a worker never inherits
the parent's threads, so OpenCV's thread pool, the progress bar's monitor thread or torch's OpenMP pool
cannot leave it holding a lock that no thread will release. The functions live here, in an importable
module, so that such workers can unpickle them.

Every job confines its files to the roots: an image path that leaves the image root (absolute, ``..``)
and a mask path whose folder resolves outside the output root (``..``, or a symlink under it) are refused
before anything is read or written.
"""
import multiprocessing
import os
import os.path as osp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Dict, Iterator, List, Tuple

from . import masks_io

#: One task: (image path relative to the image root, image root, output root).
Task = Tuple[str, str, str]
_PARAMS: Dict = {}
_CHUNK = 16  # images per task sent to a worker


class PathEscapeError(ValueError):
    """A listed image or its mask would lie outside its root."""


def _inside(path: str, root: str) -> bool:
    return osp.commonpath([path, root]) == root


def mask_relpath(rel: str) -> str:
    return osp.splitext(rel)[0] + '.png'


def confined_paths(rel: str, img_root: str, out_root: str) -> Tuple[str, str]:
    """``(image path, mask path)`` of ``rel``, or :class:`PathEscapeError` if either leaves its root.

    The image check is lexical (symlinked folders inside the image root stay readable); the mask's folder
    is resolved (``realpath``), so no write can go through a symlink to outside ``out_root``.
    """
    norm = osp.normpath(rel)
    if osp.isabs(rel) or norm == '..' or norm.startswith('..' + os.sep):
        raise PathEscapeError(f'path leaves --img-root: {rel}')
    mask = osp.join(out_root, mask_relpath(norm))
    real_root = osp.realpath(out_root)
    if not _inside(osp.realpath(osp.dirname(mask)), real_root):
        raise PathEscapeError(f'mask {mask_relpath(norm)} would be written outside --out-root '
                              '(through a symlink)')
    return osp.join(img_root, norm), mask


def init_worker(params: Dict) -> None:
    """One thread per worker process; die with the parent (Linux) so that a killed run stops writing."""
    _PARAMS.clear()
    _PARAMS.update(params)
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = '1'
    import cv2
    cv2.setNumThreads(1)  # safe: a forkserver/spawn worker starts without the parent's threads
    if sys.platform.startswith('linux'):
        try:
            import ctypes
            import signal
            ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - best effort
            pass


def generate_one(img_path: str, out_path: str) -> Dict:
    p = _PARAMS
    if p.get('throttle_s'):  # test hook: slow a run down so that it can be interrupted
        time.sleep(p['throttle_s'])
    rgb = masks_io.read_rgb(img_path, exif_orientation=p['exif_orientation'])
    ids = masks_io.fh_segment(rgb, p['scale'], p['sigma'], p['min_size'], p['backend'],
                              short_side=p['short_side'])
    num = int(ids.max()) + 1
    nbytes = masks_io.save_id_map(out_path, ids, compression=p['png_compression'])
    return dict(segments=num, uint16=num > 256, bytes=nbytes)


def verify_one(img_path: str, out_path: str) -> Dict:
    if not osp.isfile(out_path):
        return dict(problem='mask missing')
    try:
        ids = masks_io.load_id_map(out_path)
    except (OSError, ValueError) as exc:
        return dict(problem=f'mask unreadable: {exc}')
    try:
        size = masks_io.image_size(img_path, exif_orientation=_PARAMS['exif_orientation'])
    except Exception as exc:  # noqa: BLE001 - any decoder error is a finding, not a crash
        return dict(problem=f'image unreadable: {type(exc).__name__}: {exc}')
    if tuple(ids.shape) != tuple(size):
        return dict(problem=f'mask size {ids.shape[0]}x{ids.shape[1]} != image size {size[0]}x{size[1]}')
    return dict(problem=None)


def run_chunk(tasks: List[Task]) -> List[Dict]:
    """Run the configured job on each task; a failure is reported in the result, never raised."""
    job: Callable[[str, str], Dict] = verify_one if _PARAMS['verify'] else generate_one
    results = []
    for rel, img_root, out_root in tasks:
        try:
            res = job(*confined_paths(rel, img_root, out_root))
        except Exception as exc:  # noqa: BLE001 - a bad image is reported, never fatal
            res = dict(error=f'{type(exc).__name__}: {exc}'.strip())
        res['rel'] = rel
        results.append(res)
    return results


def _chunks(items: List, size: int) -> Iterator[List]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def pool_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where available (Linux, macOS), else ``spawn``: never a plain fork."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context('forkserver' if 'forkserver' in methods else 'spawn')


def execute(tasks: List[Task], params: Dict, workers: int, progress: bool, desc: str) -> Iterator[Dict]:
    """Yield one result per task, from ``workers`` processes (0: in this process), with a progress bar."""
    from tqdm import tqdm
    if not tasks:
        return
    bar = tqdm(total=len(tasks), unit='img', desc=desc, disable=not progress, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30, smoothing=0.05)
    try:
        if workers == 0:
            _PARAMS.clear()
            _PARAMS.update(params)
            for chunk in _chunks(tasks, _CHUNK):
                for res in run_chunk(chunk):
                    bar.update(1)
                    yield res
            return
        yield from _pooled(tasks, params, workers, bar)
    finally:
        bar.close()


def _pooled(tasks: List[Task], params: Dict, workers: int, bar) -> Iterator[Dict]:
    # A bounded queue of chunks keeps memory flat for millions of images.
    pool = ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=init_worker,
                               initargs=(params,))
    try:
        pending = set()
        chunk_iter = _chunks(tasks, _CHUNK)
        for chunk in chunk_iter:
            pending.add(pool.submit(run_chunk, chunk))
            if len(pending) >= 4 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                for res in fut.result():
                    bar.update(1)
                    yield res
                nxt = next(chunk_iter, None)  # one new chunk per finished one
                if nxt is not None:
                    pending.add(pool.submit(run_chunk, nxt))
    except BaseException:  # Ctrl-C or a crashed worker: do not wait for the queued chunks
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
