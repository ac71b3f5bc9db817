"""`stvfm model-info --variant V --backbone B --grid HxW --channels C`: parameter counts and output shape."""
from __future__ import annotations

import json
import logging

from stvfm.errors import ConfigError


def _grid(s: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--grid: expected HxW like 16x8, got '{s}'") from None
    return h, w


def register(sub) -> None:
    p = sub.add_parser("model-info", help="build a model (random init is fine) and print its parameter counts "
                                          "and output shape")
    p.add_argument("--variant", default=None, help="simple | token | temporal | adapter | full (default: params.yaml)")
    p.add_argument("--backbone", default=None, help="dinov2_vits14 | clip_vitb16 | deit_vitb16 | vit_tiny")
    p.add_argument("--grid", default="16x8", help="HxW (default 16x8)")
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--batch", type=int, default=2, help="batch size of the test forward pass")
    p.add_argument("--params", default=None, help="params.yaml to start from (default: ./params.yaml if present)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.vfm_blocks=4")
    p.add_argument("--no-forward", action="store_true", help="count parameters only (meta device, no memory)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from stvfm.config import ModelConfig, default_params_path, load_params
    from stvfm.models.factory import build_model, build_model_on_meta
    from stvfm.models.stvfm import count_parameters

    path = Path(args.params) if args.params else default_params_path()
    cfg = load_params(path, args.set).model if path.exists() else ModelConfig()
    changes = {k: v for k, v in (("variant", args.variant), ("backbone", args.backbone)) if v is not None}
    if not cfg.weights:
        changes["allow_random_init"] = True  # a shape/size check: random init is fine here
    if cfg.prompt_layers is None:
        changes["prompt_layers"] = 2
    cfg = dataclasses.replace(cfg, **changes)
    grid = _grid(args.grid)
    logging.getLogger("stvfm.models.backbone").setLevel(logging.ERROR)
    if args.no_forward:
        model, info = build_model_on_meta(cfg, grid, args.channels)
    else:
        model, info = build_model(cfg, grid, args.channels)
    trainable, total = count_parameters(model)
    r = {"variant": cfg.variant, "backbone": cfg.backbone, "timm_name": info.timm_name, "embed_dim": info.embed_dim,
         "vfm_blocks": info.blocks_used, "pretrained": info.pretrained, "grid": list(grid), "channels": args.channels,
         "trainable_params": trainable, "total_params": total, "trainable_pct": round(100.0 * trainable / total, 2)}
    if not args.no_forward:
        model.eval()
        x = torch.randn(args.batch, 6, args.channels, *grid)
        with torch.no_grad():
            out = model(x, torch.randn_like(x))
        r["output_st"] = list(out.st.shape)
        r["output_flow"] = list(out.flow.shape) if out.flow is not None else None
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for k, v in r.items():
            print(f"{k:17s} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k:17s} {v}")
    return 0
