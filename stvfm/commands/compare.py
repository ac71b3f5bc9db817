"""`stvfm compare`: one row per DVC experiment × dataset, test MAE / RMSE of ST-VFM and each baseline."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare experiments: one row per experiment x dataset, MAE / RMSE per method "
        "(reads `dvc exp show --json`)",
    )
    p.add_argument("--root", default=".", help="project root (default: .)")
    p.add_argument("-A", "--all-commits", action="store_true", help="every commit's experiments, not only HEAD's")
    p.add_argument("-n", "--num", type=int, default=None, help="the last N commits (dvc exp show -n)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.report.compare import exp_show_json, render, rows

    extra = (["-A"] if args.all_commits else []) + (["-n", str(args.num)] if args.num else [])
    items = rows(exp_show_json(args.root, extra))
    print(json.dumps(items, indent=2) if args.json else render(items))
    return 0
