"""DVC stage `baselines`: `python -m pipelines.baselines <dataset> [method ...]` -> metrics/<ds>/baselines.json.

Persistence, HA, ARIMA and STID (``baselines:`` in params.yaml) under the split stage's windows and the project's
metrics; one MLflow run per baseline in the dataset's experiment.
"""
from __future__ import annotations

import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from stvfm.baselines.run import run_baselines
    from stvfm.config import load_params
    from stvfm.errors import StvfmError

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m pipelines.baselines <dataset> [persistence|ha|arima|stid ...]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = run_baselines(argv[0], load_params(), ".", methods=argv[1:] or None)
    except StvfmError as e:
        print(f"baselines {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
