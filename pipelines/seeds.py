"""Seed study on real data (`make seeds-real`): `python -m pipelines.seeds <dataset> [job ...] [--set profile=real]`
with jobs `<model>@<seed>` (model: stvfm | stid; none named: stvfm@0..2 and stid@0..2, skipping results already
present; several processes may each take a share of the jobs).

Trains ST-VFM (the profile's model) and the STID baseline (its reference recipe, params.yaml baselines.stid) once
per seed, each selected on validation and scored once on test; writes metrics/<ds>/seeds/<job>.json and
reports/seeds-<ds>.md (every run, mean ± std per model, the ratio of the means). Not part of `dvc repro`."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.studies.seeds import run_seeds

    return stage_main(
        "seeds",
        lambda p, root, a: run_seeds(a[0], p, root, jobs=a[1] or None),
        argv,
        positionals=("dataset", "jobs*"),
        doc=__doc__,
        render=lambda r: r["report"],
    )


if __name__ == "__main__":
    sys.exit(main())
