"""The DVC stage entry points are thin: one library call per invocation, JSON out, one stderr line + exit 2 on a user error."""
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


@pytest.mark.parametrize("stage, lib, fn, args", STAGES)
def test_stage_calls_library_once(stage, lib, fn, args, monkeypatch, project_root, capsys):
    calls = []

    def fake(*a, **kw):
        calls.append((a, kw))
        return {"dataset": "synthetic", "mae": 1.0}

    monkeypatch.setattr(importlib.import_module(lib), fn, fake)
    mod = importlib.import_module(f"pipelines.{stage}")
    assert mod.main([*args, "--params", str(project_root / "params.yaml"), "--set", "train.epochs=1"]) == 0
    assert len(calls) == 1, f"{stage} called {fn} {len(calls)} times"
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["dataset"] == "synthetic"
    params = next(x for x in [*calls[0][0], *calls[0][1].values()] if hasattr(x, "train"))
    assert params.train.epochs == 1  # --set reaches the library


def test_stage_user_error_is_one_line(project_root, capsys):
    from pipelines import grid

    assert grid.main(["no-such-dataset", "--params", str(project_root / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grid no-such-dataset: error: unknown dataset")


def test_sweep_rejects_unknown_kind(project_root, capsys):
    from pipelines import sweep

    assert sweep.main(["synthetic", "colour", "red", "--params", str(project_root / "params.yaml")]) == 2
    assert "sweep kind must be 'variant' or 'backbone'" in capsys.readouterr().err
