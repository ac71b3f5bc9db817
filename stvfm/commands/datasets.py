"""`stvfm datasets`: print the dataset table (Table 1 of the paper + the embedded default)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list the ten paper datasets and the embedded synthetic default")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.datasets.registry import as_rows

    rows = as_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ["name", "title", "domain", "city", "span", "interval", "grid", "channels", "x1e3", "prompt_layers", "sources"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths[c]) for c in cols[:-1]) + "  sources")
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols[:-1]) + "  " + str(r["sources"]))
    return 0
