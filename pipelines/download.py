"""DVC stage ``download``: ``python -m pipelines.download <dataset>`` -> ``data/raw/<dataset>/`` + ``manifest.json``.

Thin: load params (``params.yaml`` next to the working directory, or ``$STVFM_PARAMS``), call
:func:`stvfm.datasets.download.run_download`. A user error prints one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stvfm.config import default_params_path, load_params
from stvfm.errors import StvfmError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.download", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="a name from `stvfm datasets`, synthetic[-<name>], <name>-trips or a local_sources key")
    ap.add_argument("--params", default=None, help="params file (default: params.yaml or $STVFM_PARAMS)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from stvfm.datasets.download import run_download

        params_file = Path(args.params) if args.params else default_params_path()
        params = load_params(params_file, args.set)
        out = run_download(args.dataset, params, params_file.resolve().parent)
    except StvfmError as e:
        print(f"download {args.dataset}: error: {e}", file=sys.stderr)
        return 2
    print(f"download {args.dataset}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
