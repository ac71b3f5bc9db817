"""The tiny project the serving, reliability and training tests share: the shipped params.yaml on the synthetic city
(a few days), a tiny random-init ST-VFM, no MLflow store, and the real data stages (download, grid, flow, split) run
on it. stvfm is imported inside the functions: tests/conftest.py sets the environment before anything imports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(
    backbone="vit_tiny",
    allow_random_init=True,
    vfm_blocks=1,
    d_temporal=16,
    temporal_layers=1,
    decoder_layers=1,
    heads=2,
    prompt_tokens=4,
    adapter_dim=8,
)


def write_params(root: Path, *, span_days: int = 5, model: dict | None = None, **sections: dict[str, Any]) -> Path:
    """``<root>/params.yaml``: the shipped params with ``datasets: [synthetic]`` of ``span_days`` days, the tiny model
    (``model`` on top), each of ``sections`` (e.g. ``train={...}``) merged into its section, and no tracking URI."""
    from stvfm.config import load_raw

    raw = load_raw(ROOT / "params.yaml")
    raw["datasets"] = ["synthetic"]
    raw["data"]["synthetic"]["span_days"] = span_days
    raw["model"].update(TINY_MODEL, **(model or {}))
    for name, values in sections.items():
        raw[name].update(values)
    raw["tracking"]["tracking_uri"] = None
    root.mkdir(parents=True, exist_ok=True)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_data_stages(root: Path) -> None:
    """download -> grid -> flow -> split of ``synthetic`` under ``root`` with its params.yaml."""
    from stvfm.config import load_raw, params_from_dict
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download

    p = params_from_dict(load_raw(root / "params.yaml"))
    for stage in (run_download, run_grid, run_flow, run_split):
        stage("synthetic", p, root)
