"""DVC stage ``download``: ``python -m pipelines.download <dataset>`` -> ``data/raw/<dataset>/`` + ``manifest.json``.

Thin: load params (``params.yaml`` next to the working directory, or ``$STVFM_PARAMS``), call
:func:`stvfm.datasets.download.run_download`. A user error prints one line on stderr and exits 2."""

from __future__ import annotations

import sys

from pipelines._stage import stage_main


def main(argv: list[str] | None = None) -> int:
    from stvfm.datasets.download import run_download

    return stage_main(
        "download",
        lambda p, root, a: run_download(a[0], p, root),
        argv,
        doc=__doc__,
        render=lambda out: f"download: {out}",
    )


if __name__ == "__main__":
    sys.exit(main())
