"""Mark checkpoints you trust as loadable with full unpickling (``--resume``, ``load_from``).

``python tools/misc/trust_checkpoint.py FILE [FILE ...]``

Files written by mmdetcon's runner are signed automatically; use this only for files whose origin you trust (a
colleague's run directory, an older mmdetcon version). Unpickling runs arbitrary code from the file.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmdetcon.engine.checkpoint import sign_checkpoint  # noqa: E402
from mmdetcon.utils.cli import UserError, run_cli  # noqa: E402


def main(args: argparse.Namespace) -> None:
    for path in args.files:
        if not osp.isfile(path):
            raise UserError(f'checkpoint not found: {path}')
        sign_checkpoint(path)
        print(f'trusted {path}')


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('files', nargs='+')
    parser.add_argument('--debug', action='store_true')
    run_cli(main, parser.parse_args())
