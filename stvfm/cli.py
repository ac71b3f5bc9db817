"""`stvfm` command line. Each subcommand lives in ``stvfm/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed args).

Errors derived from :class:`stvfm.errors.StvfmError` are printed as one line (no traceback) and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from stvfm.errors import StvfmError

# module names under stvfm.commands, in help order
COMMANDS = [
    "datasets",
    "fixtures",
    "data",
    "weights",
    "model_info",
    "train",
    "evaluate",
    "predict",
    "serve",
    "forecast",
    "baselines",
    "report",
    "compare",
    "tune",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stvfm", description="ST-VFM: reprogram a frozen vision foundation model for spatio-temporal forecasting"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"stvfm.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"stvfm.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        rc = args.func(args)
    except StvfmError as e:
        print(f"stvfm {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
