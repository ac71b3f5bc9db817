"""`stvfm tune run|apply`: the Ray Tune study (tune/run.py) and applying its best config to params.yaml."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("tune", help="Ray Tune study over λ, prompt layers, backbone, lr; apply the best config")
    tsub = p.add_subparsers(dest="tune_command", metavar="{run,apply}")

    from tune.run import build_parser

    r = tsub.add_parser("run", help="run a study (same as `python -m tune.run`); local Ray, or RAY_ADDRESS / --address")
    build_parser(r)
    r.set_defaults(func=_run)

    a = tsub.add_parser("apply", help="write tune/results/<ds>/best.yaml's config into params.yaml")
    a.add_argument("best", type=Path, help="e.g. tune/results/synthetic/best.yaml")
    a.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file to update (default params.yaml)"
    )
    a.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    a.set_defaults(func=_apply)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def _run(args) -> int:
    from tune.run import main_args

    return main_args(args)


def _apply(args) -> int:
    from tune.apply import apply_best

    changes = apply_best(args.best, args.params, dry_run=args.dry_run)
    if not changes:
        print(f"{args.params}: already has the config of {args.best}")
    for k, (old, new) in changes.items():
        print(f"{k}: {old!r} -> {new!r}")
    if changes and not args.dry_run:
        print(f"wrote {len(changes)} key(s) to {args.params}; train with `dvc repro` or `stvfm train`")
    return 0
