"""The one entry-point shape of every DVC stage: parse ``<args...> [--params F] [--set k=v ...]``, load the typed
params, call the library, print the result (JSON for dicts) and turn a user error into one stderr line + exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stvfm.commands._args import add_params_args
from stvfm.config import Params, default_params_path, load_params
from stvfm.errors import StvfmError


def stage_main(
    stage: str,
    run: Callable[[Params, Path, list[str]], Any],
    argv: Sequence[str] | None,
    *,
    positionals: Sequence[str] = ("dataset",),
    doc: str = "",
    render: Callable[[Any], str] | None = None,
) -> int:
    """``run(params, root, args)`` gets the positional arguments in order; ``root`` is the params file's folder."""
    ap = argparse.ArgumentParser(
        prog=f"python -m pipelines.{stage}", description=doc.strip().splitlines()[0] if doc else None
    )
    for name in positionals:
        ap.add_argument(name.rstrip("*"), nargs="*" if name.endswith("*") else None)
    add_params_args(ap, root_help=None)  # the root is the params file's folder
    ns = ap.parse_args(sys.argv[1:] if argv is None else list(argv))
    args: list[Any] = [getattr(ns, n.rstrip("*")) for n in positionals]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    label = " ".join(str(a) for a in args if not isinstance(a, list))
    try:
        params_file = Path(ns.params) if ns.params else default_params_path()
        dataset = args[0] if positionals and positionals[0] == "dataset" else None  # profile: auto -> its recipe
        params = load_params(params_file, ns.overrides, dataset=dataset)
        out = run(params, params_file.resolve().parent, args)
    except StvfmError as e:
        print(f"{stage} {label}: error: {e}", file=sys.stderr)
        return 2
    print(render(out) if render else (json.dumps(out, default=str) if isinstance(out, (dict, list)) else str(out)))
    return 0
