"""Issue 13: one epoch convention (log, history, train.json, test.json, MLflow) and consistent MLflow runs on a store
built like the default DAG's (train, evaluate, baselines, a sweep, the report in one experiment)."""

from __future__ import annotations

import re

import pytest

from stvfm.io import read_json
from stvfm.training.evaluate import run_evaluate
from stvfm.training.stage import run_train

from .conftest import tiny_params

NOT_SHAPING = ("tune.", "sweeps.", "baselines.", "local_sources.", "profiles.", "report.", "tracking.", "datasets")
SCHEMA = {"stvfm.kind", "stvfm.dataset", "stvfm.profile", "stvfm.profile_reason", "stvfm.git_commit"}


def _best_epoch_from_log(text: str) -> tuple[int, list[int]]:
    lines = re.findall(r"\] epoch (\d+)/(\d+): .*?\((?:[\d.]+ s)(, best)?", text)
    assert lines, text[-2000:]
    epochs = [int(a) for a, _, _ in lines]
    best = [int(a) for a, _, b in lines if b][-1]
    return best, epochs


def test_one_epoch_convention_log_history_testjson_mlflow(tiny_project, capsys):
    import mlflow

    p = tiny_params(tiny_project, **{"train.use_ray": False, "train.epochs": 3})
    info = run_train(p, "synthetic", tiny_project)
    run_evaluate(p, "synthetic", tiny_project)
    log_best, log_epochs = _best_epoch_from_log(capsys.readouterr().out)
    hist = read_json(tiny_project / "models" / "synthetic" / "history.json")
    test = read_json(tiny_project / "metrics" / "synthetic" / "test.json")
    train = read_json(tiny_project / "models" / "synthetic" / "train.json")
    client = mlflow.MlflowClient()
    steps = [m.step for m in client.get_metric_history(info["run_id"], "val_mae")]
    hist_best = min(hist, key=lambda h: h["val_mae"])["epoch"]
    assert log_epochs == [h["epoch"] for h in hist] == steps == [1, 2, 3]  # epochs are numbered 1..N everywhere
    assert log_best == hist_best == train["best_epoch"] == test["best_epoch"]
    assert client.get_run(info["run_id"]).data.metrics["best_epoch"] == log_best
    assert test["profile"] == train["profile"] == "default"


@pytest.mark.slow
def test_mlflow_runs_names_tags_params_times(tiny_project):
    import mlflow

    from stvfm.baselines.run import run_baselines
    from stvfm.report.run import run_report
    from stvfm.studies.sweep import run_sweep

    p = tiny_params(
        tiny_project,
        **{"train.use_ray": False, "train.epochs": 2, "baselines.stid.overrides": {"train": {"epochs": 6}}},
    )
    info = run_train(p, "synthetic", tiny_project)
    run_evaluate(p, "synthetic", tiny_project)
    run_baselines("synthetic", p, tiny_project, methods=["persistence", "ha", "stid"])
    sweep = run_sweep("synthetic", "variant", "simple", p, tiny_project)
    run_report("synthetic", p, tiny_project)

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("stvfm-synthetic")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {
        "train-stvfm-full",
        "baseline-persistence",
        "baseline-ha",
        "baseline-stid",
        "sweep-variant-simple",
        "report",
    }
    for name, r in runs.items():  # one tag schema; no un-prefixed project tags
        own = {k for k in r.data.tags if not k.startswith("mlflow.")}
        assert own >= SCHEMA and all(k.startswith("stvfm.") for k in own), (name, own)
        assert r.data.tags["stvfm.dataset"] == "synthetic" and r.data.tags["stvfm.profile"] == "default"
        assert r.data.params.get("profile") == "default", name
    kinds = {n: r.data.tags["stvfm.kind"] for n, r in runs.items()}
    assert kinds["train-stvfm-full"] == "train" and kinds["baseline-ha"] == "baseline"
    assert kinds["sweep-variant-simple"] == "sweep-variant"

    # durations cover the work they record (not the ~100 ms of logging)
    dur = lambda r: (r.info.end_time - r.info.start_time) / 1000  # noqa: E731
    detail = read_json(tiny_project / "metrics" / "synthetic" / "baselines_detail.json")["baselines"]
    for m in ("persistence", "ha", "stid"):
        assert dur(runs[f"baseline-{m}"]) >= detail[m]["seconds"] - 0.01, m
    assert detail["stid"]["seconds"] > 0.5
    assert dur(runs["sweep-variant-simple"]) >= sweep["seconds"] - 0.01
    assert dur(runs["train-stvfm-full"]) >= info["fit_s"]

    # the training run logs the params that shaped it, not the rest of params.yaml
    tp = runs["train-stvfm-full"].data.params
    assert not [k for k in tp if k.startswith(NOT_SHAPING)], sorted(tp)
    assert tp["train.epochs"] == "2" and tp["model.backbone"] == "vit_tiny" and tp["dataset"] == "synthetic"
    assert (
        len(tp) < 80
    )  # the shaping sections + the data's own facts (data.file.*, data.table1.*), not all of params.yaml
    assert tp["data.file.interval_minutes"] == "60" and tp["data.protocol"] == "ratio"
    # key metrics on every result run, and the experiment page's description compares them
    for name in ("train-stvfm-full", "baseline-ha", "baseline-stid", "sweep-variant-simple"):
        assert {"test_mae", "test_rmse"} <= set(runs[name].data.metrics), name
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs table
    note = client.get_experiment(exp.experiment_id).tags["mlflow.note.content"]
    assert "| run | kind | profile | test_mae | test_rmse |" in note and "| baseline-stid | baseline |" in note
