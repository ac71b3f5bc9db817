"""DVC stage `flow`: `python -m pipelines.flow <dataset>` -> stvfm.data.stages.run_flow (params from params.yaml)."""
from __future__ import annotations

import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from stvfm.config import load_params
    from stvfm.data.stages import run_flow
    from stvfm.errors import StvfmError

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m pipelines.flow <dataset>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run_flow(argv[0], load_params(), ".")
    except StvfmError as e:
        print(f"flow {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
