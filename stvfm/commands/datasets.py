"""`stvfm datasets`: print the dataset table (what the published files hold, where Table 1 of the paper differs, and
the embedded default)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list the ten paper datasets and the embedded synthetic default")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--root", default=".", help="project root (its data/sources.lock.json tells what is pinned)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.datasets.lock import SourcesLock, lock_path
    from stvfm.datasets.registry import as_rows

    lock = lock_path(args.root)
    rows = as_rows(SourcesLock.load(lock).files if lock.exists() else {})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = [
        "name",
        "title",
        "domain",
        "city",
        "span",
        "interval",
        "grid",
        "channels",
        "x1e3",
        "prompt_layers",
        "checksum",
        "table1",
        "sources",
    ]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths[c]) for c in cols[:-1]) + "  sources")
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols[:-1]) + "  " + str(r["sources"]))
    print(
        "\nspan, interval, grid, channels: what the published file holds; table1: where the paper's Table 1 says "
        "otherwise (docs/data-sources.md)"
    )
    tofu = [r["name"] for r in rows if r["checksum"] == "TOFU"]
    if tofu:
        print(
            f"\nchecksum TOFU (trust on first use): upstream publishes no checksum for {', '.join(tofu)}; the first "
            f"download is trusted and its sha256 pinned in {lock.as_posix()} (commit that file; later downloads must "
            "match it)"
        )
    return 0
