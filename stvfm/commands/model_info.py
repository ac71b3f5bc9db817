"""`stvfm model-info --variant V --backbone B --grid HxW --channels C [--dataset D | --interval-minutes N]
[--profile P]`: parameter counts and shapes.

The model is built on the ``meta`` device (no weights, no memory; a few seconds even for ViT-B) and one forward pass
on meta tensors gives the output shape. The params profile (``profile:`` in params.yaml, or ``--profile``) decides the
VFM blocks etc.; the output says which profile and how many of the backbone's blocks are used.

A model that reads the clock (``model.time_identity``, ``model.output: anchored | identity``, ``arch: stid``) has
time-of-day tables sized by the data interval: it comes from ``--interval-minutes``, else from ``--dataset`` (the
registry, or ``local_sources``), else ``DEFAULT_INTERVAL`` (30 min, the interval of most of the paper's datasets); it
changes only the size of those tables. ``--dataset`` also gives the grid and channels unless ``--grid`` /
``--channels`` say otherwise."""

from __future__ import annotations

import json
import logging

from stvfm.commands._args import add_params_args
from stvfm.errors import ConfigError

DEFAULT_GRID, DEFAULT_CHANNELS, DEFAULT_INTERVAL = "16x8", 2, 30


def _grid(s: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--grid: expected HxW like 16x8, got '{s}'") from None
    if h < 1 or w < 1:
        raise ConfigError(f"--grid: expected a positive height and width, got '{s}'")
    return h, w


def register(sub) -> None:
    p = sub.add_parser(
        "model-info", help="build a model (random init is fine) and print its parameter counts and output shape"
    )
    p.add_argument("--variant", default=None, help="simple | token | temporal | adapter | full (default: params.yaml)")
    p.add_argument("--backbone", default=None, help="dinov2_vits14 | clip_vitb16 | deit_vitb16 | vit_tiny")
    p.add_argument("--grid", default=None, help=f"HxW (default: the --dataset's grid, else {DEFAULT_GRID})")
    p.add_argument(
        "--channels", type=int, default=None, help=f"channels (default: the --dataset's, else {DEFAULT_CHANNELS})"
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="a dataset name (stvfm datasets list, or local_sources in params.yaml): its interval, grid and channels",
    )
    p.add_argument(
        "--interval-minutes",
        type=int,
        default=None,
        metavar="N",
        help="data interval in minutes; sizes the time-of-day tables of a model that reads the clock "
        "(model.time_identity, model.output anchored|identity, arch stid) (default: the --dataset's "
        f"interval, else {DEFAULT_INTERVAL}, that of most of the paper's datasets)",
    )
    p.add_argument("--batch", type=int, default=2, help="batch size of the test forward pass")
    p.add_argument("--profile", default=None, help="params profile (default: params.yaml `profile`, e.g. paper)")
    add_params_args(
        p,
        example="model.vfm_blocks=4",
        params_help="params.yaml to start from (default: ./params.yaml if present)",
        root_help=None,
    )
    p.add_argument("--no-forward", action="store_true", help="count parameters only (skip the shape pass)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


DIMS = "(B, T, C, H, W)"


def run(args) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from stvfm.config import ModelConfig, default_params_path, load_params
    from stvfm.datasets.registry import get_spec
    from stvfm.models.backbone import get_backbone_spec
    from stvfm.models.factory import build_model_on_meta, needs_time_ids
    from stvfm.models.stvfm import count_parameters

    path = Path(args.params) if args.params else default_params_path()
    sets = ([f"profile={args.profile}"] if args.profile else []) + list(args.overrides)
    local_sources = {}
    if path.exists():
        params = load_params(path, sets)
        cfg, profile, local_sources = params.model, f"{params.profile} ({path.name})", params.local_sources
    else:
        cfg, profile = ModelConfig(), "none (no params.yaml: ModelConfig defaults)"
    changes = {k: v for k, v in (("variant", args.variant), ("backbone", args.backbone)) if v is not None}
    if cfg.prompt_layers is None:
        changes["prompt_layers"] = 2
    cfg = dataclasses.replace(cfg, **changes)
    spec = get_spec(args.dataset, local_sources) if args.dataset else None
    grid = _grid(args.grid) if args.grid else tuple(spec.grid) if spec else _grid(DEFAULT_GRID)
    channels = args.channels if args.channels is not None else spec.channels if spec else DEFAULT_CHANNELS
    if channels < 1:
        raise ConfigError(f"--channels: expected a positive number, got {channels}")
    if args.interval_minutes is not None:
        interval, clock_from = args.interval_minutes, "--interval-minutes"
    elif spec is not None:
        interval, clock_from = spec.interval_minutes, f"dataset {spec.name}"
    else:
        interval, clock_from = DEFAULT_INTERVAL, "default; set --dataset or --interval-minutes"
    if not 1 <= int(interval) <= 24 * 60:
        raise ConfigError(f"--interval-minutes: expected minutes between 1 and 1440, got {interval}")
    depth = get_backbone_spec(cfg.backbone).depth
    logging.getLogger("stvfm.models.backbone").setLevel(logging.ERROR)
    # counting needs no weights; the interval only sizes the time-of-day tables of a model that reads the clock
    model, info = build_model_on_meta(cfg, grid, channels, interval_minutes=int(interval))
    trainable, total = count_parameters(model)
    clock = needs_time_ids(cfg)
    r = {
        "profile": profile,
        "variant": cfg.variant,
        "backbone": cfg.backbone,
        "timm_name": info.timm_name,
        "embed_dim": info.embed_dim,
        "vfm_blocks": info.blocks_used,
        "vfm_depth": depth,
        "weights": cfg.weights or "none (counting only: not needed)",
        "pretrained": bool(cfg.weights),
        "grid": list(grid),
        "channels": channels,
        "dataset": spec.name if spec else None,
        "reads_clock": clock,
        "interval_minutes": int(interval) if clock else None,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": round(100.0 * trainable / total, 2),
    }
    if not args.no_forward:
        x = torch.empty(args.batch, 6, channels, *grid, device="meta")
        tid = torch.zeros(args.batch, 12, 2, dtype=torch.int64, device="meta") if clock else None
        with torch.no_grad():
            out = model(x, torch.empty_like(x), time_ids=tid)
        r["dims"] = DIMS
        r["input"] = list(x.shape)
        r["output_st"] = list(out.st.shape)
        r["output_flow"] = list(out.flow.shape) if out.flow is not None else None
    if args.json:
        print(json.dumps(r, indent=2))
        return 0

    def shape(v):
        return "(" + ", ".join(map(str, v)) + ")"

    lines = [
        ("profile", r["profile"]),
        ("variant", r["variant"]),
        ("backbone", f"{r['backbone']} ({r['timm_name']}, embed {r['embed_dim']})"),
        (
            "VFM blocks",
            f"{r['vfm_blocks']} of {depth}"
            + ("" if r["vfm_blocks"] == depth else "  (model.vfm_blocks; null = all, the paper)"),
        ),
        ("weights", r["weights"]),
        ("grid x channels", f"{grid[0]}x{grid[1]} x {channels}"),
        ("clock", f"{interval} min ({clock_from})" if clock else "none (the model reads no time identities)"),
        ("trainable params", f"{trainable:,} ({r['trainable_pct']}%)"),
        ("total params", f"{total:,}"),
    ]
    if "output_st" in r:
        lines += [(f"input  {DIMS}", shape(r["input"])), (f"output {DIMS}", shape(r["output_st"]))]
        if r["output_flow"]:
            lines.append((f"flow   {DIMS}", shape(r["output_flow"])))
    for k, v in lines:
        print(f"{k:24s} {v}")
    return 0
