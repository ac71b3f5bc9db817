"""`stvfm data {download,grid,flow,split} <dataset>`: run one data stage outside DVC (same functions as pipelines/)."""

from __future__ import annotations

import json

from stvfm.commands._args import add_params_args

STAGES = ("download", "grid", "flow", "split")


def register(sub) -> None:
    p = sub.add_parser("data", help="run one data stage (download, grid, flow, split) for a dataset")
    p.add_argument("stage", choices=[*STAGES, "all"], help="stage to run ('all' = download..split in order)")
    p.add_argument("dataset", help="dataset name (see `stvfm datasets`, or a local_sources entry)")
    add_params_args(p, example="data.chunk_mb=2", root_help="project root (where data/ lives)")
    p.set_defaults(func=run)


def _runner(stage: str):
    if stage == "download":
        from stvfm.datasets.download import run_download

        return run_download
    from stvfm.data import stages

    return getattr(stages, f"run_{stage}")


def run(args) -> int:
    from stvfm.config import load_params

    params = load_params(args.params, args.overrides, dataset=args.dataset)
    for stage in STAGES if args.stage == "all" else (args.stage,):
        out = _runner(stage)(args.dataset, params, args.root)
        print(json.dumps({"stage": stage, **(out if isinstance(out, dict) else {"result": out})}, default=str))
    return 0
