"""A tiny synthetic project (real download/grid/flow/split stages, 5 days, tiny model) shared by the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from stvfm.config import load_raw, params_from_dict

ROOT = Path(__file__).resolve().parents[2]
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
TINY_TRAIN = dict(epochs=2, batch_size=16, lr=2e-3, num_workers=2, max_batches_per_epoch=3, patience=0)


def write_project(root: Path, *, model=None, train=None, span_days=5) -> Path:
    raw = load_raw(ROOT / "params.yaml")
    raw["datasets"] = ["synthetic"]
    raw["data"]["synthetic"]["span_days"] = span_days
    raw["model"].update(TINY_MODEL, **(model or {}))
    raw["train"].update(TINY_TRAIN, **(train or {}))
    raw["eval"].update(n_maps=2, batch_size=32)
    raw["tracking"]["tracking_uri"] = None
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root / "params.yaml"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Split outputs of a 5-day synthetic city under <tmp>/data (built once per session)."""
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download

    root = tmp_path_factory.mktemp("tinyproj")
    write_project(root)
    p = params_from_dict(load_raw(root / "params.yaml"))
    run_download("synthetic", p, root)
    run_grid("synthetic", p, root)
    run_flow("synthetic", p, root)
    run_split("synthetic", p, root)
    return root


@pytest.fixture
def tiny_project(tiny_data, tmp_path, monkeypatch) -> Path:
    """A fresh project dir with its own params.yaml and MLflow store, sharing the session's split outputs."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copytree(tiny_data / "data", root / "data")
    shutil.copy(tiny_data / "params.yaml", root / "params.yaml")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def tiny_params(root: Path, **overrides):
    from stvfm.config import load_params

    return load_params(root / "params.yaml", dict(overrides))
