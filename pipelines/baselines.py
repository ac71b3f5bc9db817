"""DVC stage `baselines`: `python -m pipelines.baselines <dataset> [method ...]` -> metrics/<ds>/baselines.json.

Persistence, HA, ARIMA and STID (``baselines:`` in params.yaml) under the split stage's windows and the project's
metrics; one MLflow run per baseline in the dataset's experiment."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.baselines.run import run_baselines

    return stage_main(
        "baselines",
        lambda p, root, a: run_baselines(a[0], p, root, methods=a[1] or None),
        argv,
        positionals=("dataset", "methods*"),
        doc=__doc__,
    )


if __name__ == "__main__":
    sys.exit(main())
