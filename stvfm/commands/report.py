"""`stvfm report [<dataset> ...] [--summary]`: the reproduction report (ours beside the paper's tables)."""

from __future__ import annotations

from stvfm.commands._args import add_params_args


def register(sub) -> None:
    p = sub.add_parser("report", help="write reports/<ds>.md (+ figures) and reports/summary.md from the stage outputs")
    p.add_argument("datasets", nargs="*", help="datasets (default: params.yaml `datasets`)")
    p.add_argument("--summary-only", action="store_true", help="only reports/summary.md")
    add_params_args(p)
    p.add_argument("--no-mlflow", action="store_true", help="do not log the reports to MLflow")
    p.add_argument("--paper", metavar="DATASET", help="only print the paper's Table 2 rows for DATASET and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.config import load_params

    if args.paper:
        from stvfm import paper

        rows = [r for r in paper.read_rows("table2_main") if r["dataset"] == args.paper]
        if not rows:
            from stvfm.errors import ConfigError

            raise ConfigError(
                f"--paper: no Table 2 rows for '{args.paper}'; datasets: {', '.join(paper.PAPER_DATASETS)}"
            )
        for r in rows:
            print(f"{r['method']:<14} RMSE {r['rmse']:>8g}  MAE {r['mae']:>8g}")
        return 0
    from stvfm.report.run import run_report, run_summary

    params = load_params(args.params, args.overrides)
    datasets = args.datasets or params.datasets
    if not args.summary_only:
        for ds in datasets:
            print(run_report(ds, params, args.root, log_mlflow=not args.no_mlflow)["report"])
    print(run_summary(params, args.root, datasets, log_mlflow=not args.no_mlflow))
    return 0
