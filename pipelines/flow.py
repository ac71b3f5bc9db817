"""DVC stage `flow`: `python -m pipelines.flow <dataset>` -> stvfm.data.stages.run_flow (params.yaml)."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.data.stages import run_flow

    return stage_main("flow", lambda p, root, a: run_flow(a[0], p, root), argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
