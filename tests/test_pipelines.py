"""The DVC stage entry points are thin: one library call per invocation, JSON out, one stderr line + exit 2 on a
user error."""

from __future__ import annotations

import importlib
import json

import pytest

STAGES = [  # (pipelines module, library module, function, positional args)
    ("grid", "stvfm.data.stages", "run_grid", ["synthetic"]),
    ("flow", "stvfm.data.stages", "run_flow", ["synthetic"]),
    ("split", "stvfm.data.stages", "run_split", ["synthetic"]),
    ("train", "stvfm.training.stage", "run_train", ["synthetic"]),
    ("evaluate", "stvfm.training.evaluate", "run_evaluate", ["synthetic"]),
    ("forecast", "stvfm.serving.batch", "run_forecast", ["synthetic"]),
    ("baselines", "stvfm.baselines.run", "run_baselines", ["synthetic", "ha"]),
]


@pytest.mark.parametrize(("stage", "lib", "fn", "args"), STAGES)
def test_stage_calls_library_once(stage, lib, fn, args, monkeypatch, project_root, capsys):
    calls = []

    def fake(*a, **kw):
        calls.append((a, kw))
        return {"dataset": "synthetic", "mae": 1.0}

    monkeypatch.setattr(importlib.import_module(lib), fn, fake)
    mod = importlib.import_module(f"pipelines.{stage}")
    assert mod.main([*args, "--params", str(project_root / "params.yaml"), "--set", "train.epochs=1"]) == 0
    assert len(calls) == 1, f"{stage} called {fn} {len(calls)} times"
    out = json.loads(next(x for x in reversed(capsys.readouterr().out.strip().splitlines()) if x.startswith("{")))
    assert out["dataset"] == "synthetic"
    params = next(x for x in [*calls[0][0], *calls[0][1].values()] if hasattr(x, "train"))
    assert params.train.epochs == 1  # --set reaches the library


def test_train_stage_ends_with_the_validation_verdict(monkeypatch, project_root, capsys):
    """The train stage hands run_train the verdict of stvfm.studies and prints its line last."""
    from stvfm.studies.verdict import validation_verdict

    seen = {}

    def fake(params, dataset, root, **kw):
        seen.update(kw)
        return {"dataset": dataset, "verdict": {"line": "WARNING: ST-VFM LOSES to HA (MAE) on validation"}}

    monkeypatch.setattr(importlib.import_module("stvfm.training.stage"), "run_train", fake)
    from pipelines import train

    assert train.main(["synthetic", "--params", str(project_root / "params.yaml")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "WARNING: ST-VFM LOSES to HA (MAE) on validation" and json.loads(lines[-2])["dataset"]
    assert seen["verdict"] is validation_verdict


@pytest.mark.parametrize(
    ("dataset", "profile"), [("synthetic", "default"), ("bikenyc2_test", "real"), ("bikenyc1-trips", "real")]
)
def test_each_dataset_gets_its_own_recipe(dataset, profile, monkeypatch, project_root, capsys):
    """params.yaml's `profile: auto`: one DAG, each stage resolves the profile for its own dataset."""
    import yaml

    raw = yaml.safe_load((project_root / "params.yaml").read_text())
    assert raw["profile"] == "auto"
    epochs = raw["profiles"]["real"]["train.epochs"] if profile == "real" else raw["train"]["epochs"]
    assert raw["profiles"]["real"]["train.epochs"] != raw["train"]["epochs"]
    seen = {}

    def fake(params, ds, root, **kw):
        seen.update(profile=params.profile, reason=params.profile_reason, epochs=params.train.epochs)
        return {"dataset": ds}

    monkeypatch.setattr(importlib.import_module("stvfm.training.stage"), "run_train", fake)
    from pipelines import train

    assert train.main([dataset, "--params", str(project_root / "params.yaml")]) == 0
    kind = "synthetic" if profile == "default" else "real"
    assert seen == {"profile": profile, "reason": f"auto: {kind} data", "epochs": epochs}


def test_stage_user_error_is_one_line(project_root, capsys):
    from pipelines import grid

    assert grid.main(["no-such-dataset", "--params", str(project_root / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grid no-such-dataset: error: unknown dataset")


def test_sweep_rejects_unknown_kind(project_root, capsys):
    from pipelines import sweep

    assert sweep.main(["synthetic", "colour", "red", "--params", str(project_root / "params.yaml")]) == 2
    assert "sweep kind must be 'variant' or 'backbone'" in capsys.readouterr().err
