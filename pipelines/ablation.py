"""Real-data ablation (`make ablation-real`): `python -m pipelines.ablation <dataset> [run ...] [--set profile=real]`
(no runs named: every row of stvfm.studies.ablation.ABLATION; several processes may each take a share of the rows —
every one rewrites the report from all results present).

Trains, with the same (converged) profile, the five variants of Table 3 (#1 simple -> full) plus the two switches
beyond the paper on `full` (time identity off, output path plain, both off = the paper's `full` under this recipe), each
selected on validation (best-val checkpoint) and scored once on test. Writes metrics/<ds>/ablation/<name>.json and
reports/ablation-<ds>.md (val and test MAE/RMSE, persistence/HA references, wall time). Not part of `dvc repro`."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.studies.ablation import run_ablation

    return stage_main(
        "ablation",
        lambda p, root, a: run_ablation(a[0], p, root, names=a[1] or None),
        argv,
        positionals=("dataset", "runs*"),
        doc=__doc__,
        render=lambda r: r["report"],
    )


if __name__ == "__main__":
    sys.exit(main())
