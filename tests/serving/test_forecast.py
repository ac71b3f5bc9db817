"""Batch forecasts (`stvfm forecast`): every window of a split, original scale, Zarr with its model version; Ray Data
(one model per actor) gives exactly the plain loop's arrays; each window equals `Forecaster.predict` on it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from stvfm.config import load_params
from stvfm.errors import DataError
from stvfm.serving.batch import run_forecast
from stvfm.serving.forecaster import load_forecaster

from .version_fixtures import raw_window


def _windows(root, split="test"):
    import pandas as pd

    return pd.read_parquet(root / "data/split/synthetic/windows.parquet", filters=[("split", "==", split)])


@pytest.mark.parametrize("which", ["plain", "tid"])
def test_forecast_plain_loop_matches_predict_per_window(tiny_versions, tmp_path, which):
    root = tiny_versions.root
    folder = getattr(tiny_versions, which)
    p = load_params(root / "params.yaml")
    out = run_forecast(p, "synthetic", root, model=str(folder), use_ray=False, out=tmp_path / "fc.zarr")
    ds = xr.open_zarr(tmp_path / "fc.zarr", consolidated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(tmp_path / "fc.zarr")  # consolidated metadata: opens at once, without a warning
    w = _windows(root)
    assert out["windows"] == len(w) == ds.sizes["origin_time"] and out["engine"] == "plain"
    assert ds["forecast"].dims == ("origin_time", "step", "y", "x", "channel")
    assert ds["forecast"].shape == (len(w), 6, 16, 8, 2) and list(ds["step"].values) == [1, 2, 3, 4, 5, 6]
    assert ds.attrs["model"] == str(folder) and ds.attrs["model_version"] == "local folder"
    assert ds.attrs["split"] == "test" and ds.attrs["scale"] == "original" and ds.attrs["dataset"] == "synthetic"
    assert list(ds["channel"].values) == ["inflow", "outflow"]
    f = load_forecaster(folder)
    for i in (0, len(w) - 1):
        t0 = int(w["t0"].iloc[i])
        x, last = raw_window(root, steps=7, end=t0 + 6)
        assert ds["origin_time"].values[i] == last
        assert ds["valid_time"].values[i, 0] == last + np.timedelta64(60, "m")
        ref = f.predict(x[None], np.array([int(last.astype(np.int64))]))[0]
        np.testing.assert_array_equal(ds["forecast"].values[i], ref)


def test_forecast_default_is_the_train_stage_exported_version(tiny_versions, tmp_path):
    import shutil

    from stvfm.io import write_json

    root = tmp_path / "proj"
    shutil.copytree(tiny_versions.root / "data", root / "data")
    shutil.copy(tiny_versions.root / "params.yaml", root / "params.yaml")
    p = load_params(root / "params.yaml", ["forecast.use_ray=false", "forecast.split=val"])
    with pytest.raises(DataError, match=r"no model version in models/synthetic/version .*run the train stage"):
        run_forecast(p, "synthetic", root)  # nothing exported yet: one line, no output
    assert not (root / "forecasts").exists()
    shutil.copytree(tiny_versions.plain, root / "models/synthetic/version")  # what the train stage exports
    write_json(root / "models/synthetic/train.json", {"model": {"registered_model": "stvfm-synthetic", "version": "7"}})
    out = run_forecast(p, "synthetic", root)
    ds = xr.open_zarr(root / "forecasts/synthetic.zarr", consolidated=False)
    assert out["model_version"] == ds.attrs["model_version"] == "stvfm-synthetic/7"
    assert ds.attrs["model"] == "models/synthetic/version" and ds.attrs["split"] == "val"
    ref = run_forecast(p, "synthetic", root, model=str(tiny_versions.plain), out=tmp_path / "ref.zarr")
    np.testing.assert_array_equal(
        ds["forecast"].values, xr.open_zarr(tmp_path / "ref.zarr", consolidated=False)["forecast"].values
    )
    assert ref["windows"] == len(_windows(root, "val"))


def test_forecast_refuses_a_model_of_another_grid(tiny_versions, tmp_path):
    from stvfm.errors import DataError
    from stvfm.serving.version import CONFIG_FILE, WEIGHTS_FILE, read_config, read_weights, write_version

    cfg = read_config(tiny_versions.plain / CONFIG_FILE, "x")
    cfg["interval_minutes"] = 30  # a genuine version (digest and all) of a 30-minute model
    bad = write_version(tmp_path / "v", cfg, read_weights(tiny_versions.plain / WEIGHTS_FILE, "x"))
    with pytest.raises(DataError, match="30-minute steps"):
        run_forecast(
            load_params(tiny_versions.root / "params.yaml"),
            "synthetic",
            tiny_versions.root,
            model=str(bad),
            use_ray=False,
            out=tmp_path / "x.zarr",
        )
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.slow
def test_forecast_ray_data_two_actors_equals_plain_loop(tiny_versions, tmp_path):
    import ray

    root = tiny_versions.root
    p = load_params(root / "params.yaml", ["forecast.batch_size=4", "forecast.split=val"])  # several batches
    plain = run_forecast(p, "synthetic", root, model=str(tiny_versions.tid), use_ray=False, out=tmp_path / "a.zarr")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
        out = run_forecast(p, "synthetic", root, model=str(tiny_versions.tid), use_ray=True, out=tmp_path / "b.zarr")
    finally:
        ray.shutdown()
    a = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)
    b = xr.open_zarr(tmp_path / "b.zarr", consolidated=False)
    assert out["engine"] == b.attrs["engine"] == "ray-data" and out["windows"] == plain["windows"] > 4
    np.testing.assert_array_equal(a["forecast"].values, b["forecast"].values)
    np.testing.assert_array_equal(a["origin_time"].values, b["origin_time"].values)


def test_forecast_removes_the_temp_folders_a_killed_run_left(tiny_versions, tmp_path):
    """A run killed mid-write leaves `.<ds>.zarr.XXXXXXXX.tmp/` beside its output; the next run removes it (under the
    output's lock, so no live run's folder is touched), and leaves other files alone."""
    out = tmp_path / "forecasts" / "synthetic.zarr"
    out.parent.mkdir()
    stale = [out.parent / ".synthetic.zarr.k1ll3d00.tmp", out.parent / ".synthetic.zarr.old"]
    for d in stale:
        (d / "synthetic.zarr").mkdir(parents=True)
        (d / "synthetic.zarr" / "zarr.json").write_text("{}")
    keep = [out.parent / ".synthetic.zarr.x.abcdefgh.tmp", out.parent / "notes.txt"]  # another target's; a file
    keep[0].mkdir()
    keep[1].write_text("mine")
    run_forecast(
        load_params(tiny_versions.root / "params.yaml"),
        "synthetic",
        tiny_versions.root,
        model=str(tiny_versions.plain),
        use_ray=False,
        out=out,
    )
    assert not any(d.exists() for d in stale) and all(p.exists() for p in keep)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, *(p.name for p in keep)])
