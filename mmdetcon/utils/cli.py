"""Shared command-line plumbing of ``tools/*.py``: config loading and one-line errors."""
import difflib
import os.path as osp
import re
import sys
from typing import Any, Callable, Dict, Iterable, Optional

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for tools)


class UserError(Exception):
    """Bad input from the user (file, key, option): printed as one line, no traceback."""
    is_input_error = True


def is_input_error(exc: BaseException) -> bool:
    """Bad input (config, type, file, refused checkpoint, unreadable data) rather than a crash: the tools
    report it in one line; anything else keeps its traceback."""
    return (isinstance(exc, (OSError, SyntaxError)) or getattr(exc, 'is_input_error', False)
            or bool(_REGISTRY_MISS.search(str(exc))))


def _closest(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ''


def check_cfg_options(cfg: Config, options: Dict[str, Any]) -> None:
    """Reject ``--cfg-options`` keys whose parent exists but which name no entry of it (typos)."""
    for key in options:
        node: Any = cfg
        parts = key.split('.')
        for depth, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and part.isdigit():
                node = node[int(part)] if int(part) < len(node) else None
                continue
            if not hasattr(node, 'keys'):
                break
            if part not in node:
                if depth == len(parts) - 1 and depth > 0:
                    break  # adding a new leaf to an existing dict is legitimate (e.g. loss_scale)
                raise UserError(f"--cfg-options: unknown config key '{'.'.join(parts[:depth + 1])}'"
                                + _closest(part, node.keys()))
            node = node[part]


def _mentions_mmdet(node: Any) -> bool:
    if isinstance(node, dict):
        kind = node.get('type')
        return (isinstance(kind, str) and kind.startswith('mmdet.')) or any(map(_mentions_mmdet, node.values()))
    return isinstance(node, (list, tuple)) and any(map(_mentions_mmdet, node))


def needs_mmcv_ops(cfg: Config) -> bool:
    """Whether a config runs mmdet, whose models and datasets import mmcv's compiled ops."""
    imports = (cfg.get('custom_imports') or {}).get('imports', [])
    imports = [imports] if isinstance(imports, str) else imports
    return (cfg.get('default_scope') == 'mmdet' or any(m.split('.')[0] == 'mmdet' for m in imports)
            or _mentions_mmdet(cfg.to_dict()))


def mmcv_ops_message(what: str, error: BaseException) -> str:
    """One line: ``what`` needs mmcv's compiled ops, which failed to import with ``error``, and how to get them."""
    import importlib.metadata as metadata
    installed = []
    for dist in ('mmcv', 'mmcv-lite'):
        try:
            installed.append(f'{dist} {metadata.version(dist)}')
        except metadata.PackageNotFoundError:
            pass
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"{what} needs mmcv's compiled ops, which do not import here ({reason}; "
            f"{' and '.join(installed) or 'no mmcv'} installed): run `make ops` in the repository, or "
            f'`PYTHON={sys.executable} tools/install_mmcv.sh`, to build and install mmcv 2.1.0 with its ops '
            '(once; the wheel is cached)')


def require_mmcv_ops(cfg: Config, path: str) -> None:
    """Raise a one-line :class:`UserError` when ``cfg`` runs mmdet and mmcv's compiled ops do not import."""
    if not needs_mmcv_ops(cfg):
        return
    try:
        import mmcv.ops  # noqa: F401
    except ImportError as e:
        raise UserError(mmcv_ops_message(f'{path} runs mmdet and', e)) from None


def load_config(path: str, cfg_options: Optional[Dict[str, Any]] = None,
                launcher: str = 'none') -> Config:
    """Load a config with readable errors, import its ``custom_imports`` (after checking that mmcv's compiled
    ops import when it runs mmdet) and pick gloo when CUDA is absent."""
    from mmengine.utils import import_modules_from_strings
    if not osp.isfile(path):
        raise UserError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path, import_custom_modules=False)
    except SyntaxError as e:
        raise UserError(f'syntax error in config {e.filename}:{e.lineno}: {e.msg}') from None
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    require_mmcv_ops(cfg, path)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        _cpu_distributed(cfg)
    return cfg


def _cpu_distributed(cfg: Config) -> None:
    """Multi-process training without CUDA: gloo and DDP without device ids.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, so the process group is created here (the
    Runner skips ``init_dist`` when one exists). SyncBN is reverted by ``MMDetConRunner``.
    """
    import torch.distributed as dist
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                 broadcast_buffers=False,
                                 find_unused_parameters=cfg.get('find_unused_parameters', False))
    if cfg.launcher == 'pytorch' and not dist.is_initialized():
        dist.init_process_group(backend='gloo')


_REGISTRY_MISS = re.compile(r"'?(\w[\w.]*)'? is not in the ([\w:]+) registry")


def explain(exc: BaseException) -> str:
    """One line that names the offending file, key or type."""
    msg = str(exc).strip().strip('"').splitlines()[0] if str(exc).strip() else type(exc).__name__
    if msg.startswith('Caught ') and 'in DataLoader worker' in msg:
        # torch re-raises a worker's error as 'Caught X in DataLoader worker ...' + its traceback,
        # whose last line ('X: message') names the file.
        msg = str(exc).strip().splitlines()[-1].split(': ', 1)[-1]
    miss = _REGISTRY_MISS.search(str(exc))
    if miss:
        name, registry = miss.groups()
        try:
            from mmengine.registry import Registry
            from mmpretrain import registry as reg
            table = {}
            for attr in dir(reg):
                r = getattr(reg, attr)
                if isinstance(r, Registry):
                    table.update(r.module_dict)
            return (f"config error: type '{name}' is not registered in {registry}"
                    + _closest(name, table.keys()))
        except Exception:  # pragma: no cover - the hint is best effort
            return f"config error: type '{name}' is not registered in {registry}"
    if isinstance(exc, UserError):
        return msg
    return f'{type(exc).__name__}: {msg}'


def close_distributed() -> None:
    """Leave the process group together and destroy it: a rank that exits while its peer still saves a
    checkpoint can abort in gloo's C++ teardown ('terminate called without an active exception')."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_cli(main: Callable[[Any], None], args: Any) -> None:
    """Run ``main(args)``; bad input ends with one line on stderr and exit code 1 (``--debug``: traceback);
    any other exception (OOM, NCCL timeout, a failing hook) prints its full traceback, labelled with the rank
    on a distributed run, on stderr and into the run's log file, and exits 1. A distributed run that
    succeeded leaves its process group cleanly."""
    try:
        main(args)
        close_distributed()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if getattr(args, 'debug', False):
            raise
        # mmengine re-raises build errors as "class X in module: ..."; prefer the cause that names the thing.
        chain, node = [], exc
        while node is not None and len(chain) < 20:
            chain.append(node)
            node = node.__cause__ or node.__context__
        named = [e for e in chain if isinstance(e, (UserError, FileNotFoundError))
                 or _REGISTRY_MISS.search(str(e))]
        ops = [e for e in chain if isinstance(e, ImportError) and 'mmcv._ext' in str(e)]
        if not ops and not any(is_input_error(e) for e in chain):
            _report_crash(exc)
            sys.exit(1)
        if ops and not any(isinstance(e, UserError) for e in chain):
            line = mmcv_ops_message('a module this run imports', ops[-1])
        else:
            line = explain(named[-1] if named else exc)
        print(f'error: {line}  (--debug shows the traceback)', file=sys.stderr)
        sys.exit(1)


def _report_crash(exc: BaseException) -> None:
    """Full traceback, prefixed with the rank on a distributed run, on stderr and in the run's log file."""
    import traceback
    from mmengine.dist import get_rank, get_world_size
    from mmengine.logging import MMLogger
    where = f'[rank {get_rank()}/{get_world_size()}] ' if get_world_size() > 1 else ''
    text = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = ''.join(f'{where}{line}\n' for line in text.rstrip().splitlines())
    print(f'{where}error: the run crashed (not an input error); traceback follows\n{text}', end='',
          file=sys.stderr, flush=True)
    if MMLogger._instance_dict:  # a Runner made its logger: write into the work dir's log file too
        logger = MMLogger.get_current_instance()
        for handler in logger.handlers:
            if hasattr(handler, 'baseFilename'):  # the work dir's log file
                handler.stream.write(f'{where}crash traceback:\n{text}')
                handler.flush()
