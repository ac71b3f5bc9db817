"""The options every params-reading command shares: ``--params``, ``--set KEY=VALUE`` (into ``args.overrides``) and
``--root``, worded once."""

from __future__ import annotations

import argparse

PARAMS_HELP = "params file (default: params.yaml or $STVFM_PARAMS)"
ROOT_HELP = "project root (default: .)"


def add_params_args(
    p: argparse.ArgumentParser,
    *,
    example: str = "train.epochs=2",
    params_help: str = PARAMS_HELP,
    root_help: str | None = ROOT_HELP,
) -> None:
    """``--params FILE``, ``--set KEY=VALUE`` (repeatable, ``args.overrides``) and, unless ``root_help`` is None,
    ``--root DIR``."""
    p.add_argument("--params", default=None, help=params_help)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a params key, e.g. --set {example} (repeatable)",
    )
    if root_help is not None:
        p.add_argument("--root", default=".", help=root_help)
