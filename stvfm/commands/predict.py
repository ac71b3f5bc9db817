"""`stvfm predict --model models:/stvfm-<ds>@champion --input series.npz --out forecast.npz [--last-time T]`.

Loads only the version's tensors (safetensors) + JSON config and rebuilds the network from the installed package.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("predict", help="forecast the next steps with a registered model (original scale)")
    p.add_argument(
        "--model",
        required=True,
        help="MLflow model URI, e.g. models:/stvfm-synthetic@champion, or a "
        "local model-version folder (config.json + weights.safetensors)",
    )
    p.add_argument(
        "--input", required=True, help=".npz with 'flow' (T, H, W, C) or a .zarr store (var 'flow'), T >= history (6)"
    )
    p.add_argument("--out", required=True, help="output .npz: 'forecast' (horizon, H, W, C)")
    p.add_argument(
        "--last-time",
        default=None,
        metavar="TIME",
        help="time of the input's last step (ISO or unix seconds; default: the .npz 'start' + "
        "'freq_minutes' or the Zarr time axis); needed by models that use time identities",
    )
    p.add_argument("--params", default=None, help="params file for tracking.tracking_uri (default: params.yaml)")
    p.add_argument("--root", default=".", help="project root holding mlflow.db (default: .)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from stvfm.config import Params, load_params
    from stvfm.serving.forecaster import predict_file
    from stvfm.tracking import use_store

    pfile = Path(args.params) if args.params else Path(args.root) / "params.yaml"
    params = load_params(pfile) if pfile.exists() else Params()
    use_store(params, args.root)
    print(json.dumps(predict_file(args.model, args.input, args.out, last_time=args.last_time)))
    return 0
