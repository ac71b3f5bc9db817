"""DVC stage `train`: `python -m pipelines.train <dataset>` -> stvfm.training.stage.run_train (params.yaml)."""
from __future__ import annotations

import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from stvfm.config import load_params
    from stvfm.errors import StvfmError
    from stvfm.training.stage import run_train

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m pipelines.train <dataset>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run_train(load_params(), argv[0], ".")
    except StvfmError as e:
        print(f"train {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: out.get(k) for k in ("dataset", "engine", "epochs_run", "best_epoch", "val", "fit_s",
                                               "wall_s", "resumed_from", "model")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
