"""DVC stage `grid`: `python -m pipelines.grid <dataset>` -> stvfm.data.stages.run_grid (params.yaml)."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.data.stages import run_grid

    return stage_main("grid", lambda p, root, a: run_grid(a[0], p, root), argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
