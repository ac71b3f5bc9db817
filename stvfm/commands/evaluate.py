"""`stvfm evaluate <dataset>`: test MAE/RMSE of models/<ds>/best.pt (the evaluate stage)."""

from __future__ import annotations

import json

from stvfm.commands._args import add_params_args


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate models/<dataset>/best.pt on the test split (MAE/RMSE, maps)")
    p.add_argument("dataset")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    add_params_args(p, example="eval.batch_size=64")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.config import load_params
    from stvfm.training.evaluate import run_evaluate

    params = load_params(args.params, args.overrides, dataset=args.dataset)
    out = run_evaluate(params, args.dataset, args.root, track=not args.no_track)
    print(json.dumps({k: out[k] for k in ("dataset", "mae", "rmse", "scale", "n_windows", "persistence")}, indent=2))
    return 0
