"""A model version is tensors (safetensors) + JSON: it round-trips exactly, and a planted pickle is refused unread."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from stvfm.errors import DataError
from stvfm.serving.forecaster import load_forecaster
from stvfm.serving.version import CONFIG_FILE, FORMAT, WEIGHTS_FILE, read_config

from .version_fixtures import raw_window
from tiny_city import ROOT


class _Touch:
    """Unpickling this object creates the file ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _env(root, db=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    if db:
        env["MLFLOW_TRACKING_URI"] = db
    return env


def exported(root, folder, **kw):
    """A tiny model in memory — every weight moved off its initial value, as training would (zero-initialised heads
    included) — and the model version exported from it (the train stage's path: best dict -> version_from_best ->
    write_version). Returns the in-memory components (model, scaler, test windows) and the version folder."""
    from stvfm.config import load_params
    from stvfm.paths import dataset_paths
    from stvfm.serving.version import write_version
    from stvfm.training.components import build_components
    from stvfm.training.stage import version_from_best

    params = load_params(root / "params.yaml", {"model.time_identity": False, "model.output": "plain", **kw})
    torch.manual_seed(0)
    comp = build_components(params, "synthetic", root, splits=("test",))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in comp.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    comp.model.eval()
    best = {
        **comp.meta,
        "model_state": {k: v.clone() for k, v in comp.model.state_dict().items()},
        "epoch": 0,
        "val": {"val_mae": 1.0},
    }
    config, state = version_from_best(best, dataset_paths("synthetic", root))
    return comp, write_version(folder, config, state)


def before_export(comp, windows):
    """Forecasts of the in-memory model on test windows, as evaluation computes them: the split's scaled windows
    (WindowDataset), the network, the train-fitted scaler's inverse — (N, horizon, H, W, C) original scale, and the
    raw grid windows (N, history + 1, H, W, C) + unix time of their last input step that a user would send."""
    import xarray as xr

    items = [comp.datasets["test"][i] for i in windows]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("x", "x_flow", "time_ids", "t0")}
    with torch.no_grad():
        out = comp.model(batch["x"], batch["x_flow"], time_ids=batch["time_ids"]).st
    ref = comp.inverse(out).permute(0, 1, 3, 4, 2).numpy()
    ds = xr.open_zarr(comp.paths.grid_zarr, consolidated=False)
    X = ds["flow"].transpose("time", "y", "x", "channel").values.astype(np.float32)
    times = ds["time"].values.astype("datetime64[s]").astype(np.int64)
    h = int(comp.meta["history"])
    t0 = batch["t0"].numpy()
    raw = np.stack([X[t - 1 : t + h] for t in t0])
    return ref, raw, times[t0 + h - 1]


def test_version_files_are_tensors_and_json_and_round_trip(tiny_versions, tmp_path):
    folder = tiny_versions.plain
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert (folder / WEIGHTS_FILE).read_bytes()[:2] not in (b"\x80\x04", b"\x80\x05", b"PK")  # not pickle, not zip
    cfg = read_config(folder / CONFIG_FILE, "x")
    assert cfg["format"] == FORMAT and cfg["grid"] == [16, 8] and cfg["channels"] == 2
    assert cfg["interval_minutes"] == 60 and cfg["time_identity"] is False and cfg["history"] == 6
    assert cfg["backbone"]["pretrained"] is False and cfg["scaler"]["kind"] == "standard"
    # the round trip: the reloaded Forecaster, fed the raw windows a user sends, forecasts what the model in memory
    # forecast before export on the same windows (same weights, same train-fitted scaler)
    comp, folder = exported(tiny_versions.root, tmp_path / "v")
    n = len(comp.datasets["test"])
    ref, raw, _ = before_export(comp, [0, n // 2, n - 1])
    got = load_forecaster(folder).predict(raw)
    assert got.shape == ref.shape == (3, 6, 16, 8, 2)
    # measured: identical to the last bit on every test window; the tolerance allows BLAS reordering only
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 1.0  # not a trivially small forecast


def test_weights_that_are_not_safetensors_are_refused_unread(tiny_versions, tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "v"
    bad.mkdir()
    (bad / CONFIG_FILE).write_bytes((tiny_versions.plain / CONFIG_FILE).read_bytes())
    (bad / WEIGHTS_FILE).write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(DataError, match="not a valid safetensors file"):
        load_forecaster(bad)
    torch.save({"w": _Touch(marker)}, bad / WEIGHTS_FILE)  # a torch zip with a pickle inside
    with pytest.raises(DataError, match="not a valid safetensors file"):
        load_forecaster(bad)
    (bad / CONFIG_FILE).write_text(json.dumps({"format": "pickle", "python_model": "model.pkl"}))
    with pytest.raises(DataError, match="format 'pickle'"):
        load_forecaster(bad)
    assert not marker.exists()
    # the payload is live: unpickling it (what a pickle-based loader does) runs it
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read())",
            str(tmp_path / "p.pkl"),
        ],
        check=True,
    )
    assert marker.exists()


def test_state_dict_must_fit_the_config(tiny_versions, tmp_path):
    from safetensors.torch import load_file

    from stvfm.serving.version import write_version

    w = load_file(tiny_versions.plain / WEIGHTS_FILE)
    w.pop(next(iter(w)))
    # a version written that way (its digest agrees): the strict load into the rebuilt network refuses it
    bad = write_version(tmp_path / "v", read_config(tiny_versions.plain / CONFIG_FILE, "x"), w)
    with pytest.raises(DataError, match=re.escape("does not fit its config.json")):
        load_forecaster(bad)


@pytest.mark.slow
def test_registered_version_loads_without_pickles_and_planted_pickles_are_refused(tiny_versions, tmp_path, monkeypatch):
    import mlflow

    from stvfm.serving import registry
    from stvfm.serving.forecaster import Forecaster
    from stvfm.serving.version import read_weights

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    mlflow.set_tracking_uri(db)
    exp = mlflow.create_experiment("stvfm-synthetic", artifact_location=(tmp_path / "art").as_uri())
    cfg = read_config(tiny_versions.plain / CONFIG_FILE, "x")
    state = read_weights(tiny_versions.plain / WEIGHTS_FILE, "x")
    with mlflow.start_run(experiment_id=exp):
        reg = registry.log_and_register_model(
            cfg,
            state,
            "synthetic",
            1.5,
            tags={
                "data_md5": "abc.dir",
                "git_commit": "deadbeef",
                "profile": "default",
                "pretrained_backbone": False,
                "backbone": "vit_tiny",
            },
        )
    assert reg["version"] == "1" and reg["champion"] is True
    client = mlflow.MlflowClient()
    mv = client.get_model_version("stvfm-synthetic", "1")
    assert (
        mv.tags["data_md5"] == "abc.dir" and mv.tags["val_mae"] == "1.5" and mv.tags["pretrained_backbone"] == "False"
    )
    assert "RANDOM INIT" in mv.description and "pending" in mv.description and "profile default" in mv.description
    registry.record_test_metrics("stvfm-synthetic", "1", 2.5, 3.5)
    mv = client.get_model_version("stvfm-synthetic", "1")
    assert mv.tags["test_rmse"] == "3.5" and "test MAE / RMSE: 2.5 / 3.5" in mv.description
    # every file of the version: no pickle anywhere
    local = pathlib.Path(
        mlflow.artifacts.download_artifacts(artifact_uri="models:/stvfm-synthetic/1", dst_path=str(tmp_path / "dl"))
    )
    files = [p for p in local.rglob("*") if p.is_file()]
    assert {"MLmodel", "mlflow_model.py", CONFIG_FILE, WEIGHTS_FILE} <= {p.name for p in files}
    for p in files:
        assert p.suffix not in (".pkl", ".pth", ".pt") and p.read_bytes()[:1] != b"\x80", p
    assert "model_code_path" in (local / "MLmodel").read_text()
    f = load_forecaster("models:/stvfm-synthetic@champion")
    x, _ = raw_window(tiny_versions.root)
    assert isinstance(f, Forecaster) and np.array_equal(
        f.predict(x[None]), load_forecaster(tiny_versions.plain).predict(x[None])
    )
    # the digest recorded at registration (issue 23): swapping the stored artifacts for another self-consistent
    # version is refused when loaded through the registry
    digest = read_config(next(p for p in files if p.name == CONFIG_FILE), "x")["digest"]
    assert (mv.tags["config_sha256"], mv.tags["weights_sha256"]) == (digest["config"], digest["weights"])
    stored = next((tmp_path / "art").rglob(CONFIG_FILE)).parent
    kept = {n: (stored / n).read_bytes() for n in (CONFIG_FILE, WEIGHTS_FILE)}
    for n in kept:
        (stored / n).write_bytes((tiny_versions.tid / n).read_bytes())
    with pytest.raises(DataError, match="recorded in the registry when it was registered"):
        load_forecaster("models:/stvfm-synthetic/1")
    for n, data in kept.items():
        (stored / n).write_bytes(data)
    assert np.array_equal(load_forecaster("models:/stvfm-synthetic/1").predict(x[None]), f.predict(x[None]))

    # a hostile registrant plants pickles: an old-style pytorch-flavour version, then a pyfunc with pickled "weights"
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(marker))
    old = tmp_path / "old" / "model"
    (old / "data").mkdir(parents=True)
    (old / "data" / "model.pth").write_bytes(payload)
    (old / "MLmodel").write_text(
        "flavors:\n  pytorch: {model_data: data, pytorch_version: 2.0}\n"
        "  python_function: {loader_module: mlflow.pytorch, data: data}\n"
    )
    evil = tmp_path / "evil" / "model" / "artifacts"
    evil.mkdir(parents=True)
    (evil / CONFIG_FILE).write_bytes((tiny_versions.plain / CONFIG_FILE).read_bytes())
    (evil / WEIGHTS_FILE).write_bytes(payload)
    (evil.parent / "MLmodel").write_text((local / "MLmodel").read_text())
    expect = {"2": "not a safe ST-VFM model version", "3": "not a valid safetensors file"}
    for src in (old, evil.parent):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifacts(str(src), "model")
        v = mlflow.register_model(f"runs:/{run.info.run_id}/model", "stvfm-synthetic").version
        client.set_registered_model_alias("stvfm-synthetic", "champion", v)
        np.savez(tmp_path / "in.npz", flow=x)
        for cmd in (
            ["predict", "--model", "models:/stvfm-synthetic@champion", "--input", "in.npz", "--out", "o.npz"],
            [
                "forecast",
                "synthetic",
                "--no-ray",
                "--model",
                "models:/stvfm-synthetic@champion",
                "--root",
                str(tiny_versions.root),
                "--params",
                str(tiny_versions.root / "params.yaml"),
                "--out",
                str(tmp_path / "fc.zarr"),
            ],
        ):
            r = subprocess.run(
                [sys.executable, "-m", "stvfm.cli", *cmd],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                env=_env(tmp_path, db),
                timeout=300,
            )
            assert r.returncode == 2, r.stderr
            assert expect[str(v)] in r.stderr and "Traceback" not in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not marker.exists() and not (tmp_path / "o.npz").exists() and not (tmp_path / "fc.zarr").exists()


def test_time_ids_reach_the_model_from_last_time(tiny_versions):
    from stvfm.data.timefeatures import window_time_ids
    from stvfm.serving.inputs import parse_time

    f = load_forecaster(tiny_versions.tid)
    seen = []
    net = f.model

    def spy(x, x_flow=None, time_ids=None):
        seen.append(time_ids)
        return net(x, x_flow, time_ids=time_ids)

    f.model = spy
    x, last = raw_window(tiny_versions.root)
    unix = int(last.astype(np.int64))
    f.predict(np.stack([x, x]), np.array([unix, unix + 3600]))
    assert seen[0].shape == (2, 12, 2) and seen[0].dtype == torch.int64
    np.testing.assert_array_equal(seen[0].numpy(), window_time_ids(np.array([unix, unix + 3600]), 60, 6, 6))
    assert seen[0][0, 5, 0] == last.astype(object).hour  # hourly slots: slot of the last input step = its hour
    assert parse_time(str(unix), "t", "f") == parse_time(str(last), "t", "f") == last
    assert load_forecaster(tiny_versions.plain).time_ids(unix) is None


def test_identity_output_version_round_trips_and_needs_timestamps(tiny_versions, tmp_path):
    """model.output=identity (STID's network inside ST-VFM): the version holds its weights by name, reloads strictly,
    forecasts what the model in memory forecast before export (from the windows' timestamps), and refuses a window
    without timestamps."""
    from safetensors.torch import load_file

    comp, folder = exported(
        tiny_versions.root, tmp_path / "v", **{"model.output": "identity", "model.time_identity": True}
    )
    cfg = read_config(folder / CONFIG_FILE, "x")
    assert cfg["time_identity"] is True
    assert any(k.startswith("output_path.identity.") for k in load_file(str(folder / WEIGHTS_FILE)))
    f = load_forecaster(folder)
    n = len(comp.datasets["test"])
    ref, raw, unix = before_export(comp, [1, n // 3, n - 2])
    a = f.predict(raw, unix)
    assert a.shape == ref.shape == (3, 6, 16, 8, 2)
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5)
    # the clock matters: the same windows an hour later forecast differently
    assert not np.allclose(f.predict(raw, unix + 3600), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="time"):
        f.predict(raw)


def test_input_example_is_a_valid_request_with_a_per_cell_scaler(tiny_versions):
    """The example logged with each model is a request `stvfm predict`/serving accepts: counts >= 0 even where a
    per-cell inverse brings zero counts back as -1e-7."""
    from stvfm.data.windows import scaler_for
    from stvfm.paths import dataset_paths
    from stvfm.training.stage import _input_example

    paths = dataset_paths("synthetic", tiny_versions.root)
    ex = _input_example(paths, {"history": 6}, scaler_for(paths, "per_cell"), {"time_identity": True})
    assert (
        ex["flow"].shape[1] in (6, 7)
        and ex["flow"].shape[2:] == (16, 8, 2)
        and ex["flow"].min() >= 0.0
        and ex["last_time"].shape == (1,)
    )
    f = load_forecaster(tiny_versions.tid)
    assert np.isfinite(f.predict(ex["flow"], ex["last_time"])).all()
