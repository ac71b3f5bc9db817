"""`stvfm forecast <dataset> [--split test] [--model URI]`: batch forecasts of a split on Ray Data ->
forecasts/<dataset>.zarr (the forecast stage)."""

from __future__ import annotations

import json

from stvfm.commands._args import add_params_args


def register(sub) -> None:
    p = sub.add_parser(
        "forecast", help="forecast every window of a split (Ray Data, one model per actor) -> forecasts/<dataset>.zarr"
    )
    p.add_argument("dataset")
    p.add_argument(
        "--split",
        default=None,
        choices=["train", "val", "test"],
        help="windows to score (default: params forecast.split)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="MLflow model URI (e.g. models:/stvfm-<ds>@champion) or a local "
        "model-version folder (default: models/<ds>/best.pt)",
    )
    p.add_argument("--out", default=None, help="output Zarr store (default: forecasts/<dataset>.zarr)")
    p.add_argument("--no-ray", action="store_true", help="score in a plain loop in this process")
    add_params_args(p, example="forecast.batch_size=32")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from stvfm.config import load_params
    from stvfm.serving.batch import run_forecast

    params = load_params(args.params, args.overrides, dataset=args.dataset)
    if args.model and not Path(args.model).is_dir():
        from stvfm.tracking import use_store

        use_store(params, args.root)
    out = run_forecast(
        params,
        args.dataset,
        args.root,
        split=args.split,
        model=args.model,
        use_ray=False if args.no_ray else None,
        out=args.out,
    )
    print(json.dumps(out, indent=2))
    return 0
