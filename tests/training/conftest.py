"""A tiny synthetic project (real download/grid/flow/split stages, 5 days, tiny model; tests/tiny_city.py) shared by the
training tests, with a tiny training budget."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiny_city import run_data_stages, write_params

TINY_TRAIN = dict(epochs=2, batch_size=16, lr=2e-3, num_workers=2, max_batches_per_epoch=3, patience=0)


def write_project(root: Path, *, model=None, train=None, span_days=5) -> Path:
    return write_params(
        root,
        span_days=span_days,
        model=model,
        train={**TINY_TRAIN, **(train or {})},
        eval=dict(n_maps=2, batch_size=32),
    )


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Split outputs of a 5-day synthetic city under <tmp>/data (built once per session)."""
    root = tmp_path_factory.mktemp("tinyproj")
    write_project(root)
    run_data_stages(root)
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
