"""MLflow for a study: one parent run per study, one nested child run per trial (tag ``mlflow.parentRunId``).

Every MLflow write happens in the Tune driver process (a ``tune.Callback``), never in the trials, so concurrent trials
never race on the sqlite store; the DB and the experiment are created before the first trial starts (stack-facts §5),
and each write is retried on ``database is locked`` (other processes may share the DB). With a tracking server
(``MLFLOW_TRACKING_URI=http://...``) the same code logs over HTTP.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ray import tune

log = logging.getLogger(__name__)
T = TypeVar("T")

TRIAL_METRICS = ("train_loss", "val_loss", "val_mae", "val_rmse")


def resolve_tracking_uri(configured: str | None, root: Path) -> str:
    """params ``tracking.tracking_uri`` > env ``MLFLOW_TRACKING_URI`` > ``sqlite:///<root>/mlflow.db``."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(root) / 'mlflow.db').resolve()}"


def retry(fn: Callable[[], T], what: str, attempts: int = 8, delay: float = 0.2) -> T:
    """Call ``fn``; on a locked/busy database retry with exponential backoff (other writers on the same sqlite DB)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # MlflowException wraps sqlalchemy OperationalError
            msg = str(e).lower()
            if i == attempts - 1 or not any(s in msg for s in ("locked", "busy", "temporarily unavailable")):
                raise
            log.warning("MLflow %s: %s; retry %d/%d", what, e.__class__.__name__, i + 1, attempts - 1)
            time.sleep(delay * 2**i)
    raise AssertionError("unreachable")


class StudyTracker:
    """Parent run for a study; :meth:`callback` gives the Tune callback that writes the child runs."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.children: dict[str, str] = {}  # trial_id -> run_id
        self.retries: dict[str, int] = {}  # trial_id -> times Tune restarted it
        self.iterations: dict[str, int] = {}

    # -- parent --------------------------------------------------------------------------------------------------
    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Create (or migrate) the DB and the experiment, then the parent run. Call before any trial starts."""
        exp = retry(lambda: self.client.get_experiment_by_name(self.experiment), "get experiment")
        if exp is None:
            loc = None
            if self.artifact_root is not None and not self.tracking_uri.startswith(("http://", "https://")):
                loc = (Path(self.artifact_root) / "mlruns").resolve().as_uri()
            self.experiment_id = retry(
                lambda: self.client.create_experiment(self.experiment, artifact_location=loc), "create experiment"
            )
        else:
            self.experiment_id = exp.experiment_id
        run = retry(
            lambda: self.client.create_run(self.experiment_id, run_name=run_name, tags={**tags, "kind": "study"}),
            "create parent run",
        )
        self.parent_run_id = run.info.run_id
        self._log(self.parent_run_id, params=params)
        return self.parent_run_id

    def finish(
        self, metrics: Mapping[str, float], tags: Mapping[str, str], artifacts: list[Path], failed: bool
    ) -> None:
        rid = self.parent_run_id
        assert rid is not None
        self._log(rid, metrics=metrics)
        for k, v in tags.items():
            retry(partial(self.client.set_tag, rid, k, v), "set tag")
        for a in artifacts:
            retry(partial(self.client.log_artifact, rid, str(a)), "log artifact")
        retry(lambda: self.client.set_terminated(rid, "FAILED" if failed else "FINISHED"), "end parent run")

    # -- children ------------------------------------------------------------------------------------------------
    def child_start(self, trial_id: str, trial_name: str, config: Mapping[str, Any]) -> str:
        if trial_id in self.children:  # a restarted trial keeps its run
            return self.children[trial_id]
        tags = {"mlflow.parentRunId": self.parent_run_id, "kind": "trial", "trial_id": trial_id}
        run = retry(
            lambda: self.client.create_run(self.experiment_id, run_name=trial_name, tags=tags), "create child run"
        )
        self.children[trial_id] = run.info.run_id
        self._log(run.info.run_id, params=config)
        return run.info.run_id

    def child_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        rid = self.children.get(trial_id)
        if rid is None:
            return
        step = int(result.get("training_iteration") or 0)
        self.iterations[trial_id] = max(step, self.iterations.get(trial_id, 0))
        metrics = {k: float(result[k]) for k in (*TRIAL_METRICS, "epoch") if isinstance(result.get(k), (int, float))}
        self._log(rid, metrics=metrics, step=step)

    def child_end(self, trial_id: str, status: str, tags: Mapping[str, str] = {}) -> None:
        rid = self.children.get(trial_id)
        if rid is None:
            return
        for k, v in {**tags, "retries": str(self.retries.get(trial_id, 0))}.items():
            retry(partial(self.client.set_tag, rid, k, v), "set tag")
        retry(lambda: self.client.set_terminated(rid, status), "end child run")

    def callback(self, max_t: int) -> MlflowTrialCallback:
        return MlflowTrialCallback(self, max_t)

    def _log(
        self, run_id: str, params: Mapping[str, Any] = {}, metrics: Mapping[str, float] = {}, step: int = 0
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        ms = [Metric(str(k), float(v), now, step) for k, v in metrics.items()]
        for i in range(0, max(len(ps), 1), 100):  # log_batch takes at most 100 params per call
            retry(
                partial(self.client.log_batch, run_id, metrics=ms if i == 0 else [], params=ps[i : i + 100]),
                "log batch",
            )


class MlflowTrialCallback(tune.Callback):
    """Tune driver-side callback: trial start -> child run, every result -> metrics at step = epoch, end -> status."""

    def __init__(self, tracker: StudyTracker, max_t: int):
        self.tracker = tracker
        self.max_t = max_t

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.child_start(trial.trial_id, str(trial), dict(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.tracker.child_result(trial.trial_id, result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.tracker.retries[trial.trial_id] = self.tracker.retries.get(trial.trial_id, 0) + 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        its = self.tracker.iterations.get(trial.trial_id, 0)
        self.tracker.child_end(
            trial.trial_id, "FINISHED", {"stopped_early": str(its < self.max_t).lower(), "epochs_run": str(its)}
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self.tracker.child_end(trial.trial_id, "FAILED", {"error": "true"})
