"""Both split protocols on a UniST file (data.split = ratio list | "published"), the scaler fitted on train only, the
facts the grid stage records, and stores that open with consolidated metadata."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stvfm.data.scaler import Scaler
from stvfm.data.stages import run_flow, run_grid, run_split
from stvfm.data.windows import WindowDataset
from stvfm.datasets.unist_fixtures import fixture_dict
from stvfm.errors import DataError
from stvfm.io import read_json
from stvfm.paths import dataset_paths

from data_helpers import make_params, npz_dataset, series, write_raw

WINDOWS = {"train": 56, "val": 12, "test": 12}  # 80 windows cut 70/15/15


@pytest.fixture
def bike(tmp_path):
    """bikenyc1 as its published file (fixture layout, 80 windows), with a spike on the last step (test only)."""
    d = fixture_dict("bikenyc1", windows=80)
    d["X_test"][0][-1][-1][0][0] += 1000.0  # the series' last step lies in the last test window only
    write_raw(tmp_path, "bikenyc1", {"BikeNYC_short.json": json.dumps(d).encode()}, "unist", source_kind="paper")
    return tmp_path, d


def _stages(root, **data):
    p = make_params(**data)
    grid = run_grid("bikenyc1", p, root)
    run_flow("bikenyc1", p, root)
    return grid, run_split("bikenyc1", p, root), dataset_paths("bikenyc1", root)


def test_published_protocol_feeds_the_files_own_windows(bike):
    root, d = bike
    _, meta, paths = _stages(root, split="published")
    assert meta["protocol"] == "published" and meta["split"] == "published"
    assert meta["n_windows"] == WINDOWS
    pub = xr.open_zarr(paths.grid_zarr, consolidated=False).attrs["published_windows"]
    for split, n in WINDOWS.items():
        ds = WindowDataset(paths, split)
        assert len(ds) == n and list(ds.t0) == pub["t0"][split]
        X = np.asarray(d[f"X_{split}"][0], dtype=np.float32)  # (N, 12, H, W), as UniST's loader holds them
        for i in (0, n // 2, n - 1):
            item = ds[i]
            x = ds.scaler.inverse(torch_cat(item["x"], item["y"]))[:, 0].numpy()
            np.testing.assert_allclose(x, X[i], rtol=1e-5, atol=1e-3)
        lo, hi = meta["bounds"][split]
        assert lo == pub["t0"][split][0] and hi == pub["t0"][split][-1] + 12
    # consecutive splits overlap as the file's do (a window list cut by ratio)
    assert meta["bounds"]["val"][0] < meta["bounds"]["train"][1]


def torch_cat(x, y):
    import torch

    return torch.cat([x, y])


@pytest.mark.parametrize("split", [[0.7, 0.15, 0.15], "published"])
def test_scaler_is_fitted_on_train_only(bike, split):
    root, _ = bike
    _, meta, paths = _stages(root, split=split, scaler="minmax")
    g = xr.open_zarr(paths.grid_zarr, consolidated=False)["flow"].values
    lo, hi = meta["bounds"]["train"]
    s = Scaler.load(paths.scaler)
    assert float(s.shift[0]) == g[lo:hi].min() and float(s.shift[0] + 2 * s.scale[0]) == g[lo:hi].max()
    assert g.max() >= 1000 > g[lo:hi].max()  # UniST's min-max over all splits would have seen the test spike


def test_ratio_protocol_windows_stay_inside_their_split(bike):
    root, _ = bike
    _, meta, paths = _stages(root)
    assert meta["protocol"] == "ratio" and meta["T"] == 91
    assert meta["bounds"] == {"train": [0, 63], "val": [63, 77], "test": [77, 91]}
    w = pd.read_parquet(paths.windows)
    for split, (lo, hi) in meta["bounds"].items():
        t0 = w.loc[w["split"] == split, "t0"].to_numpy()
        assert len(t0) == hi - lo - 11 and t0.min() == lo and t0.max() + 12 == hi


def test_grid_records_the_files_facts_and_where_table1_differs(bike, caplog):
    root, _ = bike
    with caplog.at_level("WARNING"):
        out, meta, paths = _stages(root)
    dis = ["interval: file 30 min, Table 1 60 min", "span: file 2016-08-03..2016-08-05, Table 1 2016-08-01..2016-09-29"]
    assert out["disagreements"] == dis and out["file_facts"] == {
        "interval_minutes": 30,
        "channels": 1,
        "grid": [16, 8],
        "span": ["2016-08-03", "2016-08-05"],
    }
    line = [r.getMessage() for r in caplog.records if "Table 1 disagree" in r.getMessage()]
    assert len(line) == 1 and "\n" not in line[0] and "interval: file 30 min, Table 1 60 min" in line[0]
    # meta.json: the contract the report and MLflow read
    assert meta["table1"] == {
        "interval_minutes": 60,
        "channels": None,
        "grid": [16, 8],
        "span": ["2016-08-01", "2016-09-29"],
    }
    assert meta["file_facts"] == out["file_facts"] and meta["disagreements"] == dis
    assert meta["source"] == {"kind": "paper-file", "reader": "unist", "files": ["BikeNYC_short.json"]}
    assert (meta["interval_minutes"], meta["channels"], meta["grid"], meta["channel_names"], meta["start"]) == (
        30,
        1,
        [16, 8],
        ["flow"],
        "2016-08-03T18:00:00",
    )
    stats = pd.read_parquet(paths.grid_stats)
    assert stats["interval_minutes"].tolist() == [30] and stats["table1_interval_minutes"].tolist() == [60]
    assert stats["disagreements"].tolist() == ["; ".join(dis)]
    from stvfm.data.facts import mlflow_params

    mp = mlflow_params(read_json(paths.split_meta))
    assert mp["data.file.interval_minutes"] == "30" and mp["data.table1.interval_minutes"] == "60"
    assert mp["data.protocol"] == "ratio" and mp["data.disagreements"] == "; ".join(dis)


def test_stores_open_with_consolidated_metadata(bike):
    root, _ = bike
    _, _, paths = _stages(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for store in (paths.grid_zarr, paths.flow_zarr):
            ds = xr.open_zarr(store)  # consolidated by default: no "Failed to open ... consolidated" warning
            assert ds.attrs["grid_sha256"]


def test_published_on_data_without_a_published_split(tmp_path, capsys, monkeypatch):
    params = npz_dataset(tmp_path, "mine", series(T=120, H=2, W=2))
    run_grid("mine", params, tmp_path)
    run_flow("mine", params, tmp_path)
    p = make_params({"mine": "mine.npz"}, split="published")
    with pytest.raises(
        DataError,
        match=r"dataset 'mine'.*data\.split 'published': this data has no published "
        r"train/val/test split \(its source is npz:mine\.npz\)",
    ):
        run_split("mine", p, tmp_path)
    from pipelines.split import main

    (tmp_path / "params.yaml").write_text("local_sources: {mine: mine.npz}\ndata: {split: published}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["mine"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no published train/val/test split" in err[0]
    assert not (tmp_path / "data" / "split" / "mine").exists()
