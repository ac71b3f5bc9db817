"""MLflow for a study: parent run + one nested child run per trial, written from the Tune driver's callback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tune.tracking import StudyTracker, resolve_tracking_uri, retry


def _trial(i: int):
    return SimpleNamespace(
        trial_id=f"t{i}",
        config={"model.lambda_flow": 0.1 * (i + 1), "model.prompt_layers": i % 4},
        __str__=lambda self: f"trial_{i}",
    )


def test_parent_and_children_with_interleaved_concurrent_trials(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = StudyTracker(uri, "stvfm-tune-test", artifact_root=tmp_path)
    parent = tr.start("study-1", {"tune.num_samples": 6, "space.model.lambda_flow": "{}"}, {"dataset": "synthetic"})
    cb = tr.callback(max_t=3)
    trials = [_trial(i) for i in range(6)]
    for t in trials:  # 6 trials running at once, results interleaved as Tune delivers them
        cb.on_trial_start(iteration=0, trials=trials, trial=t)
    for epoch in (1, 2, 3):
        for i, t in enumerate(trials):
            if epoch > 1 and i >= 4:
                continue  # trials 4, 5: stopped by ASHA after epoch 1
            cb.on_trial_result(
                iteration=0,
                trials=trials,
                trial=t,
                result={
                    "training_iteration": epoch,
                    "epoch": epoch - 1,
                    "val_rmse": 10.0 / (epoch + i),
                    "val_mae": 1.0,
                    "val_loss": 2.0,
                    "train_loss": 3.0,
                    "checkpoint_path": "/x",
                },
            )
    cb.on_trial_recover(iteration=0, trials=trials, trial=trials[3])
    for t in trials[:5]:
        cb.on_trial_complete(iteration=0, trials=trials, trial=t)
    cb.on_trial_error(iteration=0, trials=trials, trial=trials[5])
    tr.finish({"best_val_rmse": 2.5}, {"best_trial": "t0"}, [], failed=False)

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("stvfm-tune-test")
    assert exp.artifact_location == (tmp_path / "mlruns").resolve().as_uri()
    runs = c.search_runs([exp.experiment_id])
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(runs) == 7 and len(kids) == 6
    by_id = {r.data.tags["trial_id"]: r for r in kids}
    assert [m.value for m in c.get_metric_history(by_id["t0"].info.run_id, "val_rmse")] == [10.0, 5.0, 10 / 3]
    assert [m.step for m in c.get_metric_history(by_id["t0"].info.run_id, "val_rmse")] == [1, 2, 3]
    assert by_id["t0"].data.params["model.lambda_flow"] == "0.1"
    assert by_id["t4"].data.tags["stopped_early"] == "true" and by_id["t0"].data.tags["stopped_early"] == "false"
    assert by_id["t3"].data.tags["retries"] == "1"
    assert by_id["t5"].info.status == "FAILED" and by_id["t0"].info.status == "FINISHED"
    p = c.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.metrics["best_val_rmse"] == 2.5 and p.data.tags["kind"] == "study"


def test_retry_on_locked_db_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry(flaky, "x", delay=0.001) == "ok" and len(calls) == 3
    with pytest.raises(ValueError, match="other"):
        retry(lambda: (_ for _ in ()).throw(ValueError("other")), "x", delay=0.001)


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.5:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://10.0.0.5:5000"
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
