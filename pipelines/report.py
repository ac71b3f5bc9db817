"""DVC stages `report` and `report_summary`:

    python -m pipelines.report <dataset>     -> reports/<dataset>.md + reports/figures/<dataset>/*.png
    python -m pipelines.report --summary     -> reports/summary.md (every dataset in params.yaml `datasets`)

Both are logged to MLflow as artifacts (the dataset's experiment; `<prefix>summary` for the summary).
"""
from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from stvfm.config import load_params
    from stvfm.errors import StvfmError
    from stvfm.report.run import run_report, run_summary

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m pipelines.report <dataset> | --summary", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params()
        if argv[0] == "--summary":
            print(run_summary(params, "."))
        else:
            print(run_report(argv[0], params, ".")["report"])
    except StvfmError as e:
        print(f"report {argv[0]}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
