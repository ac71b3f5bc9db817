"""Flow, split lengths, window placement, train-only scaler, no leak, WindowDataset values."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from stvfm.data.flow import st_flow
from stvfm.data.scaler import Scaler
from stvfm.data.split import make_windows, split_bounds
from stvfm.data.stages import run_flow, run_grid, run_split
from stvfm.data.windows import WindowDataset
from stvfm.errors import DataError
from stvfm.paths import dataset_paths

from data_helpers import leftovers, npz_dataset, series


def run_all(root, name, params):
    run_grid(name, params, root)
    run_flow(name, params, root)
    return run_split(name, params, root)


def test_st_flow_values():
    x = np.array([[1.0, 2.0], [4.0, 2.0], [3.0, 7.0]], np.float32)
    np.testing.assert_array_equal(st_flow(x), [[0, 0], [3, 0], [-1, 5]])
    assert st_flow(x).dtype == np.float32


def test_split_lengths_and_window_counts():
    b = split_bounds(100, [0.7, 0.15, 0.15])
    assert b == {"train": (0, 70), "val": (70, 85), "test": (85, 100)}
    w = make_windows(b, 6, 6)
    assert w.groupby("split").size().to_dict() == {"test": 4, "train": 59, "val": 4}
    assert split_bounds(1369, [0.7, 0.15, 0.15]) == {"train": (0, 958), "val": (958, 1163), "test": (1163, 1369)}
    assert split_bounds(10, [0.5, 0.3, 0.2]) == {"train": (0, 5), "val": (5, 8), "test": (8, 10)}


def test_no_window_crosses_a_boundary():
    b = split_bounds(237, [0.7, 0.15, 0.15])
    w = make_windows(b, 6, 6)
    for s, (lo, hi) in b.items():
        t0 = w.loc[w["split"] == s, "t0"].to_numpy()
        assert t0.min() == lo and t0.max() + 12 == hi  # first and last window touch the split edges, no further
        np.testing.assert_array_equal(np.diff(t0), 1)


def test_stage_outputs(tmp_path):
    flow = series(T=100, H=4, W=3)
    params = npz_dataset(tmp_path, "toy", flow)
    meta = run_all(tmp_path, "toy", params)
    p = dataset_paths("toy", tmp_path)
    assert meta["T"] == 100 and meta["bounds"] == {"train": [0, 70], "val": [70, 85], "test": [85, 100]}
    assert meta["n_windows"] == {"train": 59, "val": 4, "test": 4}
    assert meta["grid"] == [4, 3] and meta["channels"] == 2 and meta["interval_minutes"] == 60
    assert meta["start"] == "2024-01-01T00:00:00" and meta["channel_names"] == ["inflow", "outflow"]
    assert json.loads(p.split_meta.read_text()) == meta
    w = pd.read_parquet(p.windows)
    assert list(w.columns) == ["split", "t0", "time"] and len(w) == 67
    assert w.loc[w.split == "val", "time"].iloc[0] == pd.Timestamp("2024-01-01T00:00") + pd.Timedelta(hours=76)
    sc = json.loads(p.scaler.read_text())
    np.testing.assert_allclose(sc["mean"], flow[:70].reshape(-1, 2).mean(0), rtol=1e-6)
    np.testing.assert_allclose(sc["std"], flow[:70].reshape(-1, 2).std(0), rtol=1e-6)
    assert set(sc) == {"kind", "mean", "std", "scale_diff"} and sc["kind"] == "standard"
    assert sc["scale_diff"] == sc["std"]
    stats = pd.read_parquet(p.grid_stats)
    assert list(stats["channel"]) == ["inflow", "outflow"]
    assert stats["max"].tolist() == flow.reshape(-1, 2).max(0).tolist()
    # Zarr chunks: one chunk file per array here (well under chunk_mb), never many tiny files
    assert len([f for f in p.grid_zarr.rglob("*") if f.is_file()]) < 10


def test_zarr_chunks_follow_chunk_mb(tmp_path):
    import xarray as xr

    flow = series(T=100, H=16, W=8)  # one frame = 16*8*2*4 = 1024 bytes
    params = npz_dataset(tmp_path, "toy", flow)
    params.data.chunk_mb = 32 * 1024 / 2**20  # 32 frames per chunk
    run_grid("toy", params, tmp_path)
    run_flow("toy", params, tmp_path)
    p = dataset_paths("toy", tmp_path)
    assert xr.open_zarr(p.grid_zarr, consolidated=False)["flow"].encoding["chunks"] == (32, 16, 8, 2)
    assert xr.open_zarr(p.flow_zarr, consolidated=False)["dflow"].encoding["chunks"] == (32, 16, 8, 2)
    assert len(list((p.grid_zarr / "flow" / "c").rglob("*"))) >= 4  # ceil(100 / 32) chunk files (+ dirs)


def test_window_dataset_values(tmp_path):
    flow = series(T=100, H=4, W=3)
    params = npz_dataset(tmp_path, "toy", flow)
    run_all(tmp_path, "toy", params)
    p = dataset_paths("toy", tmp_path)
    ds = WindowDataset(p, "val")
    assert len(ds) == 4
    item = ds[1]
    assert set(item) == {"x", "x_flow", "y", "y_flow", "t0", "time_ids"}
    for k in ("x", "x_flow", "y", "y_flow"):
        assert item[k].shape == (6, 2, 4, 3) and item[k].dtype == torch.float32
    assert item["time_ids"].shape == (12, 2) and item["time_ids"].dtype == torch.int64
    t0 = int(item["t0"])
    assert t0 == 71
    mean = flow[:70].reshape(-1, 2).mean(0)
    std = flow[:70].reshape(-1, 2).std(0)
    raw = flow.transpose(0, 3, 1, 2)  # (T, C, H, W)
    z = (raw - mean[None, :, None, None]) / std[None, :, None, None]
    d = st_flow(raw) / std[None, :, None, None]
    np.testing.assert_allclose(item["x"].numpy(), z[t0 : t0 + 6], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item["y"].numpy(), z[t0 + 6 : t0 + 12], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item["x_flow"].numpy(), d[t0 : t0 + 6], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item["y_flow"].numpy(), d[t0 + 6 : t0 + 12], rtol=1e-5, atol=1e-6)
    # the target flow continues the scaled series: y_flow[0] = y[0] - x[-1]
    np.testing.assert_allclose(item["y_flow"][0].numpy(), (item["y"][0] - item["x"][-1]).numpy(), atol=1e-5)
    # inverse of the scaler restores counts
    np.testing.assert_allclose(ds.scaler.inverse(item["y"]).numpy(), raw[t0 + 6 : t0 + 12], atol=1e-4)
    assert len(WindowDataset(p, "train")) == 59 and int(WindowDataset(p, "test")[3]["t0"]) == 88


def test_scaler_uses_only_train(tmp_path):
    flow = series(T=100, H=4, W=3)
    run_all(tmp_path / "a", "toy", npz_dataset(tmp_path / "a", "toy", flow))
    perturbed = flow.copy()
    perturbed[70:] = perturbed[70:] * 10 + 1000  # val and test changed beyond recognition
    run_all(tmp_path / "b", "toy", npz_dataset(tmp_path / "b", "toy", perturbed))
    a = (tmp_path / "a/data/split/toy/scaler.json").read_text()
    b = (tmp_path / "b/data/split/toy/scaler.json").read_text()
    assert a == b
    # and the train windows are unchanged
    xa, xb = (
        WindowDataset(dataset_paths("toy", tmp_path / "a"), "train"),
        WindowDataset(dataset_paths("toy", tmp_path / "b"), "train"),
    )
    for i in (0, 30, 58):
        for k in ("x", "x_flow", "y", "y_flow"):
            assert torch.equal(xa[i][k], xb[i][k])


def test_no_leak_from_future_steps(tmp_path):
    """Perturbing every step after a window's last input leaves its inputs (x, x_flow) bit-identical."""
    flow = series(T=100, H=4, W=3)
    run_all(tmp_path / "a", "toy", npz_dataset(tmp_path / "a", "toy", flow))
    cut = 78  # val window t0=72 has inputs 72..77; steps >= 78 are its future
    perturbed = flow.copy()
    perturbed[cut:] += 500
    run_all(tmp_path / "b", "toy", npz_dataset(tmp_path / "b", "toy", perturbed))
    va = WindowDataset(dataset_paths("toy", tmp_path / "a"), "val")
    vb = WindowDataset(dataset_paths("toy", tmp_path / "b"), "val")
    i = int(np.flatnonzero(va.t0 == 72)[0])
    assert torch.equal(va[i]["x"], vb[i]["x"]) and torch.equal(va[i]["x_flow"], vb[i]["x_flow"])
    assert not torch.equal(va[i]["y"], vb[i]["y"])  # the target does see the perturbation


def test_minmax_scaler(tmp_path):
    flow = series(T=100, H=4, W=3)
    params = npz_dataset(tmp_path, "toy", flow)
    params.data.scaler = "minmax"
    run_all(tmp_path, "toy", params)
    p = dataset_paths("toy", tmp_path)
    sc = json.loads(p.scaler.read_text())
    assert sc["kind"] == "minmax" and sc["min"] == flow[:70].reshape(-1, 2).min(0).tolist()
    assert sc["max"] == flow[:70].reshape(-1, 2).max(0).tolist()
    np.testing.assert_allclose(sc["scale_diff"], (np.array(sc["max"]) - sc["min"]) / 2)
    x = WindowDataset(p, "train")[0]["x"]
    s = Scaler.load(p.scaler)
    np.testing.assert_allclose(s.inverse(x).numpy(), flow[:6].transpose(0, 3, 1, 2), atol=1e-4)
    assert float(WindowDataset(p, "train")._x.min()) == pytest.approx(-1.0)
    np.testing.assert_allclose(s.scale_diff(np.ones((1, 2, 1, 1))).ravel(), 2 / (np.array(sc["max"]) - sc["min"]))


def test_too_short_series_refused(tmp_path):
    params = npz_dataset(tmp_path, "toy", series(T=60, H=2, W=2))
    run_grid("toy", params, tmp_path)
    run_flow("toy", params, tmp_path)
    with pytest.raises(
        DataError,
        match=r"dataset 'toy'.*60 steps is too short: split lengths train 42, val 9, test 9 "
        r"steps.*needs 12 steps.*at least 80 steps",
    ):
        run_split("toy", params, tmp_path)
    assert not (tmp_path / "data/split/toy").exists() and leftovers(tmp_path / "data/split") == []


def test_scaler_constant_channel_and_layouts():
    x = np.stack([np.full((10, 2, 2), 3.0), np.arange(40.0).reshape(10, 2, 2)], axis=-1)  # (T, H, W, C)
    s = Scaler.fit(x, "standard", channel_axis=-1)
    assert s.to_dict()["std"][0] == 1.0 and s.to_dict()["mean"][0] == 3.0
    z = s.transform(x, channel_axis=-1)
    np.testing.assert_allclose(z[..., 0], 0.0)
    np.testing.assert_allclose(s.inverse(z, channel_axis=-1), x)
    t = torch.from_numpy(x.transpose(0, 3, 1, 2)).float()[None]  # (B, T, C, H, W)
    np.testing.assert_allclose(s.inverse(s.transform(t)).numpy(), t.numpy(), rtol=1e-6)
    assert Scaler.from_dict(s.to_dict()).to_dict() == s.to_dict()
    with pytest.raises(Exception, match=re.escape("data.scaler: 'robust'")):
        Scaler.fit(x, "robust")


def _per_cell_flow():
    flow = series(T=100, H=4, W=3)
    flow[:, 0, 0, :] = 0.0  # an always-empty cell (water): std 0 on train
    flow[:, 1, 2, 1] = 7.0  # a constant cell of one channel
    flow[:, 3, 1, 0] *= 20  # a busy cell: per-cell scaling differs from per-channel
    return flow


def test_per_cell_scaler_fitted_on_train_only(tmp_path):
    flow = _per_cell_flow()
    params = npz_dataset(tmp_path / "a", "toy", flow)
    params.data.scaler = "per_cell"
    meta = run_all(tmp_path / "a", "toy", params)
    assert meta["scaler"] == "per_cell"
    p = dataset_paths("toy", tmp_path / "a")
    sc = json.loads(p.scaler.read_text())
    train = flow[:70].transpose(0, 3, 1, 2)  # (T, C, H, W)
    std = train.std(0)
    assert sc["kind"] == "per_cell" and np.array(sc["mean"]).shape == (2, 4, 3)
    np.testing.assert_allclose(sc["mean"], train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(sc["std"], np.where(std > 0, std, 1.0), rtol=1e-6)
    assert sc["std"][0][0][0] == 1.0 and sc["std"][1][1][2] == 1.0 and sc["mean"][1][1][2] == 7.0
    np.testing.assert_allclose(sc["scale_diff"], sc["std"])
    # val/test changed beyond recognition: the same scaler
    perturbed = flow.copy()
    perturbed[70:] = perturbed[70:] * 10 + 1000
    pb = npz_dataset(tmp_path / "b", "toy", perturbed)
    pb.data.scaler = "per_cell"
    run_all(tmp_path / "b", "toy", pb)
    assert (tmp_path / "b/data/split/toy/scaler.json").read_text() == p.scaler.read_text()
    # WindowDataset: x, y, flows are z-scored per cell; constant cells are finite (0 in train); inverse restores counts
    ds = WindowDataset(p, "test")
    item = ds[2]
    t0 = int(item["t0"])
    mean, sd = np.array(sc["mean"]), np.array(sc["std"])
    raw = flow.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(item["x"].numpy(), (raw[t0 : t0 + 6] - mean) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(item["y_flow"].numpy(), st_flow(raw)[t0 + 6 : t0 + 12] / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.scaler.inverse(item["y"]).numpy(), raw[t0 + 6 : t0 + 12], atol=1e-4)
    tr = WindowDataset(p, "train")
    assert np.isfinite(tr._x).all() and float(np.abs(tr._x[:, 0, 0, 0]).max()) == 0.0
    assert float(np.abs(tr._x[:, 1, 1, 2]).max()) == 0.0


def test_per_cell_scaler_round_trip_layouts_and_json(tmp_path):
    flow = _per_cell_flow()  # (T, H, W, C)
    s = Scaler.fit(flow[:70], "per_cell", channel_axis=-1)
    s2 = Scaler.fit(flow[:70].transpose(0, 3, 1, 2), "per_cell", channel_axis=-3)
    np.testing.assert_array_equal(s.shift, s2.shift)
    assert s.channels == 2 and s.shift.shape == (2, 4, 3)
    z = s.transform(flow, channel_axis=-1)
    np.testing.assert_allclose(z[:70].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.inverse(z, channel_axis=-1), flow, rtol=1e-5, atol=1e-4)
    t = torch.from_numpy(flow.transpose(0, 3, 1, 2)).float()[None]  # (B, T, C, H, W)
    zt = s.transform(t)
    np.testing.assert_allclose(zt[0].numpy(), z.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.inverse(zt).numpy(), t.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(s.inverse_diff(s.scale_diff(t)).numpy(), t.numpy(), rtol=1e-5, atol=1e-4)
    shift, scale = s.broadcastable(5)
    assert shift.shape == scale.shape == (1, 1, 2, 4, 3)
    assert Scaler("standard", np.ones(2), np.ones(2)).broadcastable(5)[0].shape == (1, 1, 2, 1, 1)
    s.save(tmp_path / "scaler.json")
    back = Scaler.load(tmp_path / "scaler.json")
    assert back.kind == "per_cell" and back.to_dict() == s.to_dict()
    np.testing.assert_array_equal(back.scale, s.scale)
    with pytest.raises(ValueError, match="per_cell scaler"):
        s.transform(np.zeros((5, 2)), channel_axis=-1)
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "per_cell", "mean": [1.0], "std": [1.0]}))
    with pytest.raises(DataError, match=r"bad\.json.*per_cell scaler.*3-d"):
        Scaler.load(tmp_path / "bad.json")


def test_per_cell_scaler_through_evaluate_and_forecaster(tmp_path):
    """predict_split (evaluate) and the registered Forecaster go through the scaler's methods: a persistence model in
    the per-cell scaled space scores exactly the raw-count persistence, and the Forecaster maps raw in to raw out."""
    from stvfm.models.output import ModelOutput
    from stvfm.serving.forecaster import Forecaster
    from stvfm.training.evaluate import predict_split

    class Last(torch.nn.Module):
        def forward(self, x, x_flow=None, time_ids=None):
            return ModelOutput(x[:, -1:].expand(-1, 6, -1, -1, -1) * 1.0 + 0.0, None)

    flow = _per_cell_flow()
    params = npz_dataset(tmp_path, "toy", flow)
    params.data.scaler = "per_cell"
    run_all(tmp_path, "toy", params)
    p = dataset_paths("toy", tmp_path)
    ds = WindowDataset(p, "test")
    acc, pers, _ = predict_split(Last(), ds, ds.scaler, batch_size=3)
    t0 = ds.t0
    y = np.stack([flow[t + 6 : t + 12] for t in t0])
    last = np.stack([np.repeat(flow[t + 5 : t + 6], 6, 0) for t in t0])
    assert acc.mae == pytest.approx(float(np.abs(y - last).mean()), rel=1e-5)
    assert pers.mae == pytest.approx(acc.mae, rel=1e-6)
    f = Forecaster(Last(), ds.scaler, history=6, horizon=6, grid=(4, 3), channels=2, interval_minutes=60)
    x = flow[80:87][None]  # (B, T, H, W, C), original scale
    np.testing.assert_allclose(f.predict(x)[0], np.repeat(x[:, -1:], 6, 1)[0], rtol=1e-5, atol=1e-4)
