"""`stvfm compare`: one row per experiment x dataset from `dvc exp show --json`, MAE / RMSE per method, narrow."""

from __future__ import annotations

from stvfm.report.compare import render, rows


def _data(profile, mae):
    params = {
        "profile": profile,
        "train": {"epochs": 8},
        "profiles": {"real": {"train.epochs": 40}},
        "local_sources": {"bikenyc1_tail": {"path": "x.npz"}},
    }
    return {
        "params": {"params.yaml": {"data": params}},
        "metrics": {
            "metrics/synthetic/stvfm.json": {"data": {"mae": mae, "rmse": 3.8}},
            "metrics/synthetic/baselines/stid.json": {"data": {"mae": 1.5, "rmse": 2.5, "mae_std": 0.02}},
            "metrics/synthetic/baselines/ha.json": {"data": {"mae": 1.7, "rmse": 2.9}},
            "metrics/bikenyc1_tail/stvfm.json": {"data": {"mae": 5.0, "rmse": 9.0}},
            "metrics/synthetic/sweeps/variant-full.json": {"data": {"mae": 9.9}},
        },
    }


def test_rows_and_render():
    doc = [
        {"rev": "workspace", "name": None, "data": _data("default", 2.2), "experiments": None},
        {
            "rev": "0123456789abcdef",
            "name": "main",
            "data": _data("default", 2.3),
            "experiments": [{"revs": [{"rev": "fedcba98", "name": "paper-run", "data": _data("paper", 1.2)}]}],
        },
    ]
    items = rows(doc)
    assert [(r["experiment"], r["dataset"]) for r in items] == [
        ("workspace", "bikenyc1_tail"),
        ("workspace", "synthetic"),
        ("main", "bikenyc1_tail"),
        ("main", "synthetic"),
        ("paper-run", "bikenyc1_tail"),
        ("paper-run", "synthetic"),
    ]
    syn = items[-1]
    assert syn["profile"] == "paper" and set(syn["scores"]) == {"ST-VFM", "STID", "HA"}  # sweeps are not compared
    text = render(items)
    lines = text.splitlines()
    assert lines[0].split() == ["experiment", "profile", "dataset", "ST-VFM", "STID", "HA"]
    assert "paper-run   paper    synthetic      1.200 / 3.800*" in text  # * = lowest MAE of the row
    assert "1.500 / 2.500 ±0.02*" in lines[2]
    assert max(len(x) for x in lines) <= 120


def test_profile_auto_is_resolved_per_dataset():
    items = rows([{"rev": "workspace", "name": None, "data": _data("auto", 2.2), "experiments": None}])
    assert {r["dataset"]: r["profile"] for r in items} == {
        "bikenyc1_tail": "real (auto)",
        "synthetic": "default (auto)",
    }


def test_render_empty():
    assert "no results yet" in render([])
