"""DVC matrix stages `sweep_variant` / `sweep_backbone`: `python -m pipelines.sweep <dataset> variant|backbone <value>`.

Trains one configuration with the cheap sweep profile of params.yaml `sweeps:` and writes
metrics/<ds>/sweeps/<kind>-<value>.json (+ one MLflow run).
"""
from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from stvfm.config import load_params
    from stvfm.errors import StvfmError
    from stvfm.report.sweep import run_sweep

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[1] not in ("variant", "backbone"):
        print("usage: python -m pipelines.sweep <dataset> variant|backbone <value>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = run_sweep(argv[0], argv[1], argv[2], load_params(), ".")
    except StvfmError as e:
        print(f"sweep {' '.join(argv)}: error: {e}", file=sys.stderr)
        return 2
    print(f"{argv[0]} {argv[1]}={argv[2]}: MAE {res['mae']:.4f} RMSE {res['rmse']:.4f} ({res['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
