"""DVC stage `split`: `python -m pipelines.split <dataset>` -> stvfm.data.stages.run_split (params.yaml)."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.data.stages import run_split

    return stage_main("split", lambda p, root, a: run_split(a[0], p, root), argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
