"""DVC stage `forecast`: `python -m pipelines.forecast <dataset>` -> stvfm.serving.batch.run_forecast (params.yaml):
every window of `forecast.split` scored on Ray Data -> forecasts/<dataset>.zarr."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.serving.batch import run_forecast

    return stage_main("forecast", lambda p, root, a: run_forecast(p, a[0], root), argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
