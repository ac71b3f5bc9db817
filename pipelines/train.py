"""DVC stage `train`: `python -m pipelines.train <dataset>` -> stvfm.training.stage.run_train (params.yaml)."""
from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.training.stage import run_train

    keys = ("dataset", "engine", "epochs_run", "best_epoch", "val", "fit_s", "wall_s", "resumed_from", "model")
    def run(p, root, a):
        out = run_train(p, a[0], root)
        return {k: out.get(k) for k in keys}

    return stage_main("train", run, argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
