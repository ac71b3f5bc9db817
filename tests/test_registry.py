from __future__ import annotations

import json

import pytest

from stvfm.cli import main
from stvfm.datasets.registry import DATASETS, SYNTHETIC, get_spec, table1_differences
from stvfm.errors import ConfigError

# Table 1 of the paper as printed (+ §4.1): grid, interval, ×1e3 flag, cross-prompt layers
TABLE1 = {
    "crowd": ((16, 20), 30, True, 2),
    "cellular": ((16, 20), 30, True, 2),
    "tdrive": ((32, 32), 60, False, 2),
    "bikenyc1": ((16, 8), 60, False, 1),
    "bikenyc2": ((10, 20), 30, False, 1),
    "taxinyc1": ((16, 12), 30, False, 1),
    "taxinyc2": ((20, 10), 30, False, 1),
    "trafficzz": ((26, 26), 5, False, 2),
    "traffictj": ((24, 30), 5, False, 2),
    "trafficsh": ((28, 32), 5, False, 2),
}
# What the published UniST files hold (docs/data-sources.md, "What the files hold"): interval, grid, one channel,
# timestamp form
FILES = {
    "crowd": (30, (16, 20), "index"),
    "cellular": (30, (16, 20), "index"),
    "tdrive": (60, (32, 32), "pairs"),
    "bikenyc1": (30, (16, 8), "pairs"),
    "bikenyc2": (60, (10, 20), "pairs"),
    "taxinyc1": (30, (16, 12), "pairs"),
    "taxinyc2": (30, (10, 20), "pairs"),
    "trafficzz": (30, (26, 26), "pairs"),
    "traffictj": (30, (24, 30), "pairs"),
    "trafficsh": (30, (28, 32), "pairs"),
}


def test_paper_row_is_kept_as_printed():
    assert set(DATASETS) == set(TABLE1)
    for name, (grid, interval, x1e3, layers) in TABLE1.items():
        s = DATASETS[name]
        assert (s.paper.grid, s.paper.interval_minutes, s.scale_1e3, s.prompt_layers) == (grid, interval, x1e3, layers)
        assert s.paper.channels is None  # Table 1 lists no channel count
        assert s.sources, f"{name} has no source"
    assert DATASETS["tdrive"].paper.city == "NYC" and DATASETS["tdrive"].paper.span == ("2015-02-01", "2016-06-02")


def test_table_holds_what_the_files_hold():
    for name, (interval, grid, stamps) in FILES.items():
        s = DATASETS[name]
        assert (s.interval_minutes, s.grid, s.channels, len(s.channel_names), s.stamps) == (
            interval,
            grid,
            1,
            1,
            stamps,
        ), name
    td = DATASETS["tdrive"]  # T-Drive is Beijing taxis, hourly, to 2015-06-30
    assert (td.city, td.span) == ("Beijing", ("2015-02-01", "2015-06-30"))
    assert table1_differences(DATASETS["taxinyc2"]) == ["grid: file 10x20, Table 1 20x10"]
    assert table1_differences(DATASETS["crowd"]) == []
    assert table1_differences(DATASETS["trafficsh"]) == ["interval: file 30 min, Table 1 5 min"]
    # the trip records give two channels (inflow, outflow)
    assert (get_spec("bikenyc1-trips").channels, get_spec("bikenyc1-trips").channel_names) == (2, ("inflow", "outflow"))


def test_spans():
    assert DATASETS["bikenyc1"].span == ("2016-08-01", "2016-09-29")
    assert DATASETS["bikenyc1"].num_steps == 60 * 48  # a 30-minute file
    assert DATASETS["trafficsh"].num_steps == 32 * 48


def test_synthetic_variants():
    assert get_spec("synthetic") is SYNTHETIC
    s = get_spec("synthetic-trafficsh")
    assert s.kind == "synthetic" and s.grid == (28, 32) and s.interval_minutes == 30 and s.channels == 1
    assert s.sources == () and s.like == "trafficsh"


def test_local_source():
    s = get_spec("mine", {"mine": {"path": "x.npz", "like": "bikenyc2"}})
    assert s.kind == "local" and s.local_path == "x.npz" and s.prompt_layers == 1
    assert get_spec("plain", {"plain": "y.npz"}).local_path == "y.npz"


@pytest.mark.parametrize("name", ["nope", "synthetic-nope"])
def test_unknown_dataset(name):
    with pytest.raises(ConfigError, match="unknown dataset"):
        get_spec(name)


def test_cli_datasets(capsys):
    assert main(["datasets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(TABLE1) | {"synthetic"}
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "BikeNYC-1" in out and "interval: file 30 min, Table 1 60 min" in out
