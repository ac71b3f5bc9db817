"""MLflow logging for baseline, sweep and report runs: one run per result in the dataset's experiment.

The tracking URI and experiment come from :mod:`stvfm.tracking` (the project's one MLflow module): URI =
``tracking.tracking_uri`` or env ``MLFLOW_TRACKING_URI`` or ``sqlite:///<root>/mlflow.db``; experiment =
``tracking.experiment_prefix + dataset``. Set env ``STVFM_NO_MLFLOW=1`` to skip logging (tests).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

from stvfm.config import Params

log = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("STVFM_NO_MLFLOW", "") not in ("1", "true", "yes")


def _experiment(params: Params, dataset: str, root: Path):
    """Set the tracking URI and return the experiment id (created once, with artifacts beside the DB)."""
    from stvfm import tracking  # the project's MLflow module (URI + experiment rules)

    return tracking.setup(params, dataset, root)


def log_result(params: Params, dataset: str, root: str | Path, *, run_name: str, kind: str,
               run_params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
               per_step: list[dict] | None = None, history: list[dict] | None = None,
               artifacts: Iterable[str | Path] = (), tags: dict[str, str] | None = None,
               started_at: float | None = None, ended_at: float | None = None) -> str | None:
    """One MLflow run: params, metrics (+ per-step test metrics as steps, + per-epoch history with 1-based epoch
    steps), artifacts. The run's start/end are ``started_at``/``ended_at`` (unix s; the wall clock of the fit it
    records), tags follow :func:`stvfm.tracking.run_tags`. Returns the run id."""
    if not enabled():
        return None
    import mlflow
    from mlflow.entities import Metric, Param

    from stvfm import tracking

    exp_id = _experiment(params, dataset, Path(root))
    now = time.time()
    run_tags = tracking.run_tags(params, dataset, kind, root, **{k.removeprefix("stvfm."): v
                                                                 for k, v in (tags or {}).items()})
    run_id, finish = tracking.timed_run(exp_id, run_name, run_tags, started_at if started_at is not None else now,
                                        ended_at if ended_at is not None else now)
    client = mlflow.MlflowClient()
    try:
        items = [(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)[:6000])
                 for k, v in {"dataset": dataset, "profile": params.profile, **(run_params or {})}.items()]
        batch_p = [Param(k, v) for k, v in items]
        ms = int(now * 1000)
        batch = [Metric(k, float(v), ms, 0) for k, v in (metrics or {}).items() if v is not None]
        for r in per_step or []:
            batch += [Metric("test_mae_by_step", float(r["mae"]), ms, int(r["step"])),
                      Metric("test_rmse_by_step", float(r["rmse"]), ms, int(r["step"]))]
        for h in history or []:
            e = int(h.get("epoch", 0))
            batch += [Metric(k, float(h[k]), ms, e) for k in ("train_loss", "val_loss", "val_mae", "val_rmse") if k in h]
        for i in range(0, max(len(batch_p), len(batch)), 90):
            client.log_batch(run_id, metrics=batch[i:i + 90], params=batch_p[i:i + 90])
        for a in artifacts:
            a = Path(a)
            if a.is_dir():
                client.log_artifacts(run_id, str(a), artifact_path=a.name)
            elif a.is_file():
                client.log_artifact(run_id, str(a))
    except BaseException:
        finish("FAILED")
        raise
    finish()
    return run_id
