from __future__ import annotations

import json

import pytest

from stvfm.cli import main
from stvfm.datasets.registry import DATASETS, SYNTHETIC, get_spec
from stvfm.errors import ConfigError

# Table 1 of the paper (+ §4.1): grid, interval, ×1e3 flag, cross-prompt layers
TABLE1 = {
    "crowd": ((16, 20), 30, True, 2), "cellular": ((16, 20), 30, True, 2), "tdrive": ((32, 32), 60, False, 2),
    "bikenyc1": ((16, 8), 60, False, 1), "bikenyc2": ((10, 20), 30, False, 1), "taxinyc1": ((16, 12), 30, False, 1),
    "taxinyc2": ((20, 10), 30, False, 1), "trafficzz": ((26, 26), 5, False, 2), "traffictj": ((24, 30), 5, False, 2),
    "trafficsh": ((28, 32), 5, False, 2),
}


def test_table_matches_paper():
    assert set(DATASETS) == set(TABLE1)
    for name, (grid, interval, x1e3, layers) in TABLE1.items():
        s = DATASETS[name]
        assert (s.grid, s.interval_minutes, s.scale_1e3, s.prompt_layers) == (grid, interval, x1e3, layers), name
        assert s.sources, f"{name} has no source"


def test_spans():
    assert DATASETS["bikenyc1"].span == ("2016-08-01", "2016-09-29")
    assert DATASETS["bikenyc1"].num_steps == 60 * 24
    assert DATASETS["trafficsh"].num_steps == 32 * 288


def test_synthetic_variants():
    assert get_spec("synthetic") is SYNTHETIC
    s = get_spec("synthetic-trafficsh")
    assert s.kind == "synthetic" and s.grid == (28, 32) and s.interval_minutes == 5 and s.channels == 1
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
    assert "BikeNYC-1" in capsys.readouterr().out
