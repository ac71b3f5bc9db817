"""DVC stages `report` and `report_summary`:

    python -m pipelines.report <dataset>     -> reports/<dataset>.md + reports/figures/<dataset>/*.png
    python -m pipelines.report --summary     -> reports/summary.md (every dataset in params.yaml `datasets`)

Both are logged to MLflow as artifacts (the dataset's experiment; `<prefix>summary` for the summary)."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    import sys as _sys

    from stvfm.report.run import run_report, run_summary

    args = list(_sys.argv[1:] if argv is None else argv)
    if "--summary" in args:
        args.remove("--summary")
        return stage_main("report", lambda p, root, a: run_summary(p, root), args, positionals=(), doc=__doc__)
    return stage_main("report", lambda p, root, a: run_report(a[0], p, root)["report"], args, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
