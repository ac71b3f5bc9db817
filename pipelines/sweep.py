"""DVC matrix stages `sweep_variant` / `sweep_backbone`: `python -m pipelines.sweep <dataset> variant|backbone <value>`.

Trains one configuration with the cheap sweep profile of params.yaml `sweeps:` and writes
metrics/<ds>/sweeps/<kind>-<value>.json (+ one MLflow run)."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.errors import ConfigError
    from stvfm.studies.sweep import run_sweep

    def run(p, root, a):
        if a[1] not in ("variant", "backbone"):
            raise ConfigError(f"sweep kind must be 'variant' or 'backbone', got '{a[1]}'")
        return run_sweep(a[0], a[1], a[2], p, root)

    return stage_main(
        "sweep",
        run,
        argv,
        positionals=("dataset", "kind", "value"),
        doc=__doc__,
        render=lambda r: f"MAE {r['mae']:.4f} RMSE {r['rmse']:.4f} ({r['seconds']:.1f} s)",
    )


if __name__ == "__main__":
    sys.exit(main())
