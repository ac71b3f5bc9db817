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
               artifacts: Iterable[str | Path] = (), tags: dict[str, str] | None = None) -> str | None:
    """One MLflow run: params, metrics (+ per-step test metrics as steps, + per-epoch history), artifacts. Returns the run id."""
    if not enabled():
        return None
    import mlflow

    exp_id = _experiment(params, dataset, Path(root))
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name,
                          tags={"stvfm.kind": kind, "stvfm.dataset": dataset, **(tags or {})}) as run:
        if run_params:
            items = [(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)[:6000]) for k, v in run_params.items()]
            for i in range(0, len(items), 90):
                mlflow.log_params(dict(items[i:i + 90]))
        from stvfm import tracking

        mlflow.set_tag("git_commit", tracking.git_commit(root))
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        from mlflow.entities import Metric

        client = mlflow.MlflowClient()
        batch = []
        now = int(time.time() * 1000)
        for r in per_step or []:
            batch += [Metric("test_mae_by_step", float(r["mae"]), now, int(r["step"])),
                      Metric("test_rmse_by_step", float(r["rmse"]), now, int(r["step"]))]
        for h in history or []:
            e = int(h.get("epoch", 0))
            batch += [Metric(k, float(h[k]), now, e) for k in ("train_loss", "val_loss", "val_mae", "val_rmse") if k in h]
        if batch:
            client.log_batch(run.info.run_id, metrics=batch)
        for a in artifacts:
            a = Path(a)
            if a.is_dir():
                mlflow.log_artifacts(str(a), artifact_path=a.name)
            elif a.is_file():
                mlflow.log_artifact(str(a))
        return run.info.run_id
