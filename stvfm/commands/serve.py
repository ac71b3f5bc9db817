"""`stvfm serve --model models:/stvfm-<ds>@champion [--host 127.0.0.1] [--port 5001] [--set serve.max_windows=16]`:
the model version over HTTP with request limits (``mlflow models serve``'s protocol; docs/serving.md)."""

from __future__ import annotations

from stvfm.commands._args import add_params_args


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model version over HTTP (POST /invocations) with request limits")
    p.add_argument(
        "--model",
        required=True,
        help="MLflow model URI, e.g. models:/stvfm-synthetic@champion, or a "
        "local model-version folder (config.json + weights.safetensors)",
    )
    p.add_argument("--host", default=None, help="address to listen on (default: params serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: params serve.port, 5001)")
    add_params_args(
        p,
        example="serve.max_windows=16 (env STVFM_SERVE_<KEY> also works)",
        params_help="params file for serve.* and tracking.tracking_uri (default: params.yaml in --root when present)",
        root_help="project root holding mlflow.db (default: .)",
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import os
    from pathlib import Path

    from stvfm.config import Params, load_params, params_from_dict, parse_overrides, set_dotted, validate_serve
    from stvfm.serving.forecaster import load_forecaster
    from stvfm.serving.limits import ENV_PREFIX, resolve
    from stvfm.serving.server import serve
    from stvfm.tracking import use_store

    pfile = Path(args.params) if args.params else Path(args.root) / "params.yaml"
    if pfile.exists() or args.params:
        params = load_params(pfile, args.overrides)
    else:
        raw = Params().to_dict()
        for k, v in parse_overrides(args.overrides):
            set_dotted(raw, k, v)
        params = params_from_dict(raw)
    on_cli = {k.split(".", 1)[1] for k, _ in parse_overrides(args.overrides) if k.startswith("serve.")}
    env = {
        k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() not in on_cli
    }
    cfg = resolve(params.serve, env)  # params.yaml < env STVFM_SERVE_* < --set serve.* < --host/--port
    for key in ("host", "port"):
        if getattr(args, key) is not None:
            cfg = dataclasses.replace(cfg, **{key: getattr(args, key)})
    validate_serve(cfg)
    if not Path(args.model).is_dir():
        use_store(params, args.root)
    serve(load_forecaster(args.model), cfg, host=cfg.host, port=cfg.port, model=args.model, log_level=args.log_level)
    return 0
