"""DVC stage `evaluate`: `python -m pipelines.evaluate <dataset>` -> stvfm.evaluate.run_evaluate (params.yaml)."""
from __future__ import annotations

import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from stvfm.config import load_params
    from stvfm.errors import StvfmError
    from stvfm.evaluate import run_evaluate

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m pipelines.evaluate <dataset>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run_evaluate(load_params(), argv[0], ".")
    except StvfmError as e:
        print(f"evaluate {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: out[k] for k in ("dataset", "mae", "rmse", "persistence", "n_windows", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
