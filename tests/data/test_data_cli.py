"""`stvfm data <stage> <ds>` runs the same functions as the DVC pipelines and reports errors in one line."""

from __future__ import annotations

import json
import os

import numpy as np
import yaml

from stvfm.cli import main

from data_helpers import series, write_raw


def test_cli_grid_flow_split(tmp_path, capsys):
    write_raw(tmp_path, "toy", {"toy.npz": {"flow": series(T=100, H=4, W=3), "freq_minutes": np.int64(30)}}, "npz")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"datasets": ["toy"], "local_sources": {"toy": "toy.npz"}}))
    args = ["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    for stage in ("grid", "flow", "split"):
        assert main(["data", stage, "toy", *args]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [o["stage"] for o in out] == ["grid", "flow", "split"]
    assert out[2]["n_windows"] == {"train": 59, "val": 4, "test": 4} and out[2]["interval_minutes"] == 30
    assert main(["data", "split", "toy", *args, "--set", "data.history=30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stvfm data: error: dataset 'toy'") and "too short" in err and err[-1] == "\n"


def test_pipeline_entry_point(tmp_path, monkeypatch, capsys):
    from pipelines import grid

    write_raw(tmp_path, "toy", {"toy.npz": {"flow": series(T=20), "freq_minutes": np.int64(60)}}, "npz")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"local_sources": {"toy": "toy.npz"}}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STVFM_PARAMS", raising=False)
    assert grid.main(["toy"]) == 0
    assert (tmp_path / "data/grid/toy.zarr").is_dir()
    assert grid.main(["nope"]) == 2
    assert "grid nope: error:" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "data/grid")) == ["toy.stats.parquet", "toy.zarr"]


def test_cli_all_stages_on_synthetic(tmp_path, capsys):
    """download (the synthetic city) -> grid -> flow -> split, without DVC."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"datasets": ["synthetic"]}))
    rc = main(
        [
            "data",
            "all",
            "synthetic",
            "--params",
            str(tmp_path / "params.yaml"),
            "--root",
            str(tmp_path),
            "--set",
            "data.synthetic.span_days=4",
        ]
    )
    assert rc == 0
    meta = json.loads((tmp_path / "data/split/synthetic/meta.json").read_text())
    assert meta["T"] == 96 and meta["grid"] == [16, 8] and meta["n_windows"] == {"train": 56, "val": 3, "test": 4}
    stats = __import__("pandas").read_parquet(tmp_path / "data/grid/synthetic.stats.parquet")
    assert (stats["records"] > 0).all() and list(stats["channel"]) == ["inflow", "outflow"]
