"""DVC stage `train`: `python -m pipelines.train <dataset>` -> stvfm.training.stage.run_train (params.yaml).

Its last output line is the verdict against HA and persistence on validation (stvfm.studies.verdict)."""

from __future__ import annotations

import json
import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.studies.verdict import validation_verdict
    from stvfm.training.stage import run_train, train_summary

    def run(p, root, a):
        return run_train(p, a[0], root, verdict=validation_verdict)

    return stage_main(
        "train",
        run,
        argv,
        doc=__doc__,
        render=lambda out: "\n".join(
            [
                json.dumps(train_summary(out), default=str),
                *([out["verdict"]["line"]] if out.get("verdict") else []),
            ]
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
