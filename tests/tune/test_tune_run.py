"""tune.run without a cluster: argument/params errors before Ray starts, concurrency capping, best-trial selection."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from stvfm.errors import ConfigError
from tune import run as tr
from tune.settings import tune_settings


@pytest.fixture
def proj(tmp_path, project_root):
    shutil.copy(project_root / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "nyc-bikes"], "unknown dataset 'nyc-bikes'"),
        (["--dataset", "synthetic", "--profile", "gpu8"], "tune profile 'gpu8' is not defined"),
        (["--dataset", "synthetic", "--set", "tune.metric=val_mse"], "params.tune.metric: 'val_mse' is not reported"),
        (["--dataset", "synthetic", "--set", "model.lamda_flow=0.1"], r"params.model: unknown key\(s\) lamda_flow"),
        (["--dataset", "bikenyc1"], r"split outputs missing .*run `dvc repro split@bikenyc1` first"),
        (
            ["--dataset", "synthetic", "--trainer", "nowhere.module:build"],
            "trainer factory 'nowhere.module:build' cannot be",
        ),
    ],
)
def test_errors_before_any_ray_or_mlflow(proj, argv, message, capsys):
    assert tr.main([*argv, "--root", str(proj)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tune.run: error: ") and re.search(message, err), err
    assert not (proj / "mlflow.db").exists() and not (proj / "tune").exists()  # nothing half-written


def test_concurrency_is_capped_to_what_fits(monkeypatch, project_root):
    import ray

    s = tune_settings(yaml.safe_load((project_root / "params.yaml").read_text())["tune"])  # 2 CPUs per trial
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 5.0})
    assert tr.concurrency(s, local=True) == 2
    s.max_concurrent_trials = 4
    assert tr.concurrency(s, local=True) == 2  # 4 drivers would starve the workers' placement groups
    s.max_concurrent_trials = None
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    assert tr.concurrency(s, local=True) == 4
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    with pytest.raises(ConfigError, match=r"one trial needs 2\.0 CPU.*raise tune\.local_num_cpus"):
        tr.concurrency(s, local=True)
    assert tr.concurrency(s, local=False) == 1  # a cluster may still autoscale


def test_best_of_uses_each_trials_best_epoch():
    def res(tid, rmse, err=None, resumed=(-1,)):
        df = pd.DataFrame(
            {
                "val_rmse": rmse,
                "epoch": range(len(rmse)),
                "val_mae": rmse,
                "checkpoint_path": [f"/ck/{tid}/{i}" for i in range(len(rmse))],
                "resumed_from": list(resumed) * len(rmse),
            }
        )
        return SimpleNamespace(
            metrics_dataframe=df,
            config={"model.lambda_flow": 0.5},
            error=err,
            path=f"/x/{tid}",
            metrics={"trial_id": tid, "training_iteration": len(rmse)},
        )

    rows = tr.best_of(
        [
            res("a", [3.0, 2.0, 2.5]),
            res("b", [2.2]),
            res("c", [1.0], err=RuntimeError("boom\nx")),
            res("d", [4.0, 3.0], resumed=(1,)),
        ],
        "val_rmse",
        "min",
    )
    a = rows[0]
    assert a["trial"] == "train_trial_a" and a["value"] == 2.0 and a["metrics"]["epoch"] == 1
    assert a["checkpoint_path"] == "/ck/a/1" and a["iterations"] == 3 and a["resumed"] == 0
    assert rows[2]["error"] == "boom" and rows[3]["resumed"] == 1


def test_stvfm_tune_run_cli_shares_the_parser(proj, capsys):
    from stvfm.cli import main

    assert main(["tune", "run", "--dataset", "nyc-bikes", "--root", str(proj)]) == 2
    assert "stvfm tune: error: unknown dataset 'nyc-bikes'" in capsys.readouterr().err
    assert main(["tune"]) == 1  # no sub-command: help
