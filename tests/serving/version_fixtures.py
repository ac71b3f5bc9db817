"""A tiny synthetic project (real download/grid/flow/split stages, 5 days) and model versions of a tiny random-init
ST-VFM built on it — no training needed to test loading, serving and batch forecasting (they must agree with each
other, not be accurate). Imported by tests/serving and tests/reliability; the session fixture ``tiny_versions``
built from them lives in tests/conftest.py, where both folders see it."""

from __future__ import annotations

from pathlib import Path

from tiny_city import run_data_stages, write_params


def build_project(root: Path, span_days: int = 5) -> Path:
    write_params(root, span_days=span_days, forecast=dict(batch_size=16))
    run_data_stages(root)
    return root


def make_best(root: Path, *, time_identity: bool = False, seed: int = 0, output: str = "plain") -> dict:
    """A best.pt-like dict of a random-init tiny model (what the train stage would export)."""
    import torch

    from stvfm.config import load_params
    from stvfm.training.components import build_components

    params = load_params(root / "params.yaml", {"model.time_identity": time_identity, "model.output": output})
    torch.manual_seed(seed)
    comp = build_components(params, "synthetic", root, splits=("test",))
    return {**comp.meta, "model_state": comp.model.state_dict(), "epoch": 0, "val": {"val_mae": 1.0}}


def make_version(root: Path, name: str, **kw) -> Path:
    from stvfm.paths import dataset_paths
    from stvfm.serving.version import write_version
    from stvfm.training.stage import version_from_best

    config, state = version_from_best(make_best(root, **kw), dataset_paths("synthetic", root))
    return write_version(root / name, config, state)


def raw_window(root: Path, steps: int = 8, end: int | None = None):
    """(steps, H, W, C) of the raw grid ending at step ``end`` (default: the last) and the time of its last step."""
    import numpy as np
    import xarray as xr

    ds = xr.open_zarr(root / "data/grid/synthetic.zarr", consolidated=False)
    T = ds.sizes["time"]
    end = T if end is None else end
    flow = ds["flow"].isel(time=slice(end - steps, end)).transpose("time", "y", "x", "channel").values
    return flow.astype(np.float32), ds["time"].values[end - 1].astype("datetime64[s]")
