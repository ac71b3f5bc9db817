"""`stvfm baselines <dataset>`: persistence, HA, ARIMA, STID on the test windows -> metrics/<ds>/baselines.json."""

from __future__ import annotations

from stvfm.commands._args import add_params_args


def register(sub) -> None:
    p = sub.add_parser("baselines", help="score persistence/HA/ARIMA/STID under the same splits and metrics")
    p.add_argument("dataset")
    p.add_argument(
        "--method",
        action="append",
        choices=["persistence", "ha", "arima", "stid"],
        help="only these baselines (repeatable; default: params.yaml baselines.methods)",
    )
    add_params_args(p, example="baselines.stid.overrides.train.epochs=2")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.baselines.run import run_baselines
    from stvfm.config import load_params

    params = load_params(args.params, args.overrides, dataset=args.dataset)
    out = run_baselines(args.dataset, params, args.root, methods=args.method, log_mlflow=not args.no_mlflow)
    width = max(len(k) for k in out)
    print(f"{'baseline'.ljust(width)}  {'MAE':>10}  {'RMSE':>10}")
    for k, v in out.items():
        print(f"{k.ljust(width)}  {v['mae']:10.4f}  {v['rmse']:10.4f}")
    return 0
