"""DVC stage `evaluate`: `python -m pipelines.evaluate <dataset>` -> stvfm.training.evaluate.run_evaluate
(params.yaml)."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.training.evaluate import run_evaluate

    keys = ("dataset", "mae", "rmse", "persistence", "n_windows", "seconds")
    return stage_main(
        "evaluate",
        lambda p, root, a: {k: v for k, v in run_evaluate(p, a[0], root).items() if k in keys},
        argv,
        doc=__doc__,
    )


if __name__ == "__main__":
    sys.exit(main())
