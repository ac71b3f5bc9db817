"""The fixture generator (UniST's published layout) and the ten fixture files through the real path:
download (mirror) -> grid -> flow -> split -> train -> evaluate -> report."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import xarray as xr

from stvfm.cli import main as cli_main
from stvfm.data.unist import index_weekday_slot, read_unist
from stvfm.datasets.lock import LOCK_ENV
from stvfm.datasets.registry import DATASETS, table1_differences
from stvfm.datasets.unist_fixtures import MARKER, fixture_dict, write_fixtures
from stvfm.io import read_json


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_fixture_is_in_the_published_layout_and_reads_back(tmp_path, name):
    spec = DATASETS[name]
    d = fixture_dict(name, windows=14)
    assert sorted(d) == ["X_test", "X_train", "X_val", "timestamps"]
    H, W = spec.grid
    spd = 24 * 60 // spec.interval_minutes
    for split, n in (("train", 9), ("val", 2), ("test", 3)):
        X, P = (np.asarray(a) for a in d[f"X_{split}"])
        assert X.shape == (n, 12, H, W) and P.shape == (n, 12, 3, H, W)  # one channel; 3 days of period context
        ts = np.asarray(d["timestamps"][split])
        assert ts.shape == ((n, 12) if spec.stamps == "index" else (n, 12, 2))
        assert np.issubdtype(ts.dtype, np.integer) and np.issubdtype(X.dtype, np.floating)
    if spec.stamps == "index":  # UniST's reading: index 0 = the span start, a Wednesday 00:00
        assert (np.datetime64(spec.span[0], "D").astype(np.int64) + 3) % 7 == 2 == index_weekday_slot(0)[0]
        assert d["timestamps"]["train"][0][0] == 3 * 48 - 12  # the first window with 3 days of period context
    else:
        assert max(s for w in d["timestamps"]["train"] for _, s in w) < spd
    p = tmp_path / spec.sources[0].filename
    p.write_text(json.dumps(d))
    ds = read_unist(p, dataset=name, start=spec.span[0])
    assert ds.attrs["interval_minutes"] == spec.interval_minutes
    assert ds["flow"].shape[1:] == (H, W, 1)
    assert {k: len(v) for k, v in ds.attrs["published_windows"]["t0"].items()} == {"train": 9, "val": 2, "test": 3}
    assert ds["time"].values[0] >= np.datetime64(spec.span[0])


def test_period_arrays_hold_the_days_before(tmp_path):
    # X_period[i, t, p] = series[a_i + 12 + t - (3 - p) * D] (the relation UniST issue #19 reports for the files)
    d = fixture_dict("bikenyc2", windows=60)  # hourly: D = 24
    p = tmp_path / "BikeNYC2_short.json"
    p.write_text(json.dumps(d))
    ds = read_unist(p, dataset="bikenyc2", start="2016-07-01")
    s = ds["flow"].values[..., 0]
    P = np.asarray(d["X_test"][1], dtype=np.float32)
    for i, a in enumerate(ds.attrs["published_windows"]["t0"]["test"]):
        for t in range(12):
            np.testing.assert_array_equal(P[i, t, 2], s[a + 12 + t - 24])


def test_counts_carry_float_round_off_like_the_published_files():
    text = json.dumps(fixture_dict("taxinyc2", windows=14))
    assert "00000000001," in text or "99999999999," in text  # e.g. 4.000000000000001, 6.999999999999999


def test_cli_writes_the_mirror_and_the_archive(tmp_path, capsys):
    assert (
        cli_main(
            [
                "fixtures",
                str(tmp_path / "m"),
                "--datasets",
                "crowd",
                "bikenyc2",
                "--windows",
                "14",
                "--archive",
                "UniST.zip",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["BikeNYC2_short.json", "Crowd_short.json", MARKER, "UniST.zip"]
    with zipfile.ZipFile(tmp_path / "m" / "UniST.zip") as zf:
        assert sorted(zf.namelist()) == ["dataset/BikeNYC2_short.json", "dataset/Crowd_short.json"]
    assert cli_main(["fixtures", str(tmp_path / "m"), "--datasets", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the ten, end to end
@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    d = tmp_path_factory.mktemp("unist-mirror")
    write_fixtures(d)
    return d


@pytest.mark.slow
def test_the_ten_fixture_files_download_to_report(tmp_path, mirror, monkeypatch, project_root, caplog):
    """`make smoke`'s path in one process: ~2-4 min on 2 cores."""
    from stvfm.config import load_params
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download
    from stvfm.report.run import run_report
    from stvfm.training.evaluate import run_evaluate
    from stvfm.training.stage import run_train

    committed = (project_root / "data" / "sources.lock.json").read_bytes()
    monkeypatch.setenv(LOCK_ENV, "fixtures.lock.json")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    p = load_params(
        project_root / "params.yaml",
        ["profile=smoke", f"data.mirror_dir={mirror}", "train.batch_size=8", "train.max_batches_per_epoch=2"],
    )
    for name, spec in DATASETS.items():
        caplog.clear()
        run_download(name, p, tmp_path)
        with caplog.at_level("WARNING"):
            out = run_grid(name, p, tmp_path)
        ff = out["file_facts"]
        assert (ff["interval_minutes"], ff["channels"], ff["grid"]) == (spec.interval_minutes, 1, list(spec.grid))
        g = xr.open_zarr(tmp_path / "data" / "grid" / f"{name}.zarr")
        assert (g.attrs["interval_minutes"], g.sizes["channel"], g.sizes["y"], g.sizes["x"]) == (
            spec.interval_minutes,
            1,
            *spec.grid,
        )
        # where the file and Table 1 disagree: one line in the stage output, both values in meta.json
        expected = [x for x in table1_differences(spec) if x.startswith(("interval", "grid"))]
        assert [x for x in out["disagreements"] if not x.startswith("span")] == expected
        lines = [r.getMessage() for r in caplog.records if "Table 1 disagree" in r.getMessage()]
        assert len(lines) == 1 and all(x in lines[0] for x in expected)
        run_flow(name, p, tmp_path)
        meta = run_split(name, p, tmp_path)
        assert (
            meta["disagreements"] == out["disagreements"]
            and meta["table1"]["interval_minutes"] == spec.paper.interval_minutes
            and meta["source"]["kind"] == "paper-file"
        )
        run_train(p, name, tmp_path, track=name == "bikenyc1")
        run_evaluate(p, name, tmp_path, track=False)
        rep = run_report(name, p, tmp_path, log_mlflow=False)
        assert os.path.exists(rep["report"])
    lock = read_json(tmp_path / "fixtures.lock.json")["files"]
    assert len(lock) == 10  # the fixtures are pinned in the lock env STVFM_SOURCES_LOCK names ...
    assert (project_root / "data" / "sources.lock.json").read_bytes() == committed  # ... never in the project's
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True)
    row = runs[runs["params.dataset"] == "bikenyc1"].iloc[0]
    assert row["params.data.file.interval_minutes"] == "30" and row["params.data.table1.interval_minutes"] == "60"
    assert row["params.data.protocol"] == "ratio" and "interval: file 30 min" in row["params.data.disagreements"]
