"""MLflow tracking: the store, one experiment per dataset, and the runs every stage logs. With
:mod:`stvfm.serving.registry` (registered model versions), :mod:`stvfm.serving.pyfunc` and the train stage
(:mod:`stvfm.training.stage`, which drives its own run), the only library modules that import MLflow (an
import-linter contract in pyproject.toml).

Store: ``tracking.tracking_uri`` from params, else env ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``;
artifacts of a sqlite store go to ``mlartifacts/`` beside the DB (set as each experiment's artifact_location). One
experiment per dataset (``tracking.experiment_prefix + dataset``). Set env ``STVFM_NO_MLFLOW=1`` to skip the result runs
of baselines, sweeps and reports (:func:`log_result`; tests).

Create the store in the parent process before any worker touches it (concurrent first-time migrations of a sqlite
DB race; stack facts §5).

Run conventions (every run the stages log; asserted by tests/training/test_mlflow_runs.py):

- **names** say what the run is: ``train-<arch>-<variant>`` (the train stage; evaluate logs into it),
  ``baseline-<method>``, ``sweep-<kind>-<value>``, ``report``, ``summary`` (:func:`run_name`);
- **tags**, one schema (:func:`run_tags`): ``stvfm.kind``, ``stvfm.dataset``, ``stvfm.profile``, ``stvfm.git_commit``,
  plus kind-specific ``stvfm.*`` keys (``stvfm.engine``, ``stvfm.data_md5``, ``stvfm.pretrained_backbone``);
- **params**: only those that shaped the run (:func:`shaping_params`: data windows/split/scaler, model, train, the
  dataset and profile) — never ``tune.*``, ``sweeps.*``, ``baselines.*``, ``local_sources.*``, ``profiles.*``;
- **times**: a run's start/end are the wall-clock times of the work it records (:func:`timed_run`);
- **key metrics** ``test_mae``/``test_rmse`` on every run that has them, and the experiment's description (shown
  on its page in the UI) is a table of those per run (:func:`write_experiment_summary`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from stvfm.config import Params, flatten

log = logging.getLogger(__name__)
CHAMPION = "champion"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
VAL_TAG = "val_mae"


def tracking_uri(params: Params, root: str | Path) -> str:
    if params.tracking.tracking_uri:
        return params.tracking.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(root).resolve() / 'mlflow.db').as_posix()}"


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides (--artifacts-destination)


def use_store(params: Params, root: str | Path) -> str:
    """Point MLflow at the project's store (to read a registered model: ``models:/...`` URIs); returns the URI."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri(params, root)
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_name(params: Params, dataset: str) -> str:
    return f"{params.tracking.experiment_prefix}{dataset}"


def registered_name(dataset: str) -> str:
    return f"stvfm-{dataset}"


def setup(params: Params, dataset: str, root: str | Path) -> str:
    """Point MLflow at the store, create/migrate it and the dataset's experiment; returns the experiment id."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri(params, root)
    mlflow.set_tracking_uri(uri)
    name = experiment_name(params, dataset)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        art = _artifact_root(uri)
        exp_id = client.create_experiment(name, artifact_location=f"{art}/{name}" if art else None)
    else:
        exp_id = exp.experiment_id
    if exp is None or exp.tags.get(KIND_TAG) != KIND:
        # the UI opens a "model training" experiment on its runs table (MLflow 3 otherwise guesses GenAI: traces)
        client.set_experiment_tag(exp_id, KIND_TAG, KIND)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit(root: str | Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _md5_dir(path: Path) -> str:
    h = hashlib.md5()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(hashlib.md5(f.read_bytes()).hexdigest().encode())
    return h.hexdigest() + ".dir"


def dvc_data_hash(root: str | Path, rel_path: str) -> str:
    """The md5 DVC recorded for ``rel_path`` in dvc.lock (what the stage consumed), else one computed here."""
    root = Path(root)
    lock = root / "dvc.lock"
    if lock.is_file():
        try:
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
            for st in stages.values():
                for o in st.get("outs", []) or []:
                    if o.get("path") == rel_path and o.get("md5"):
                        return o["md5"]
        except yaml.YAMLError:
            pass
    p = root / rel_path
    return _md5_dir(p) if p.is_dir() else (hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "missing")


def clean_tag(v: Any) -> str:
    s = "null" if v is None else str(v)
    return s[:6000]


# params sections that shape a training run (the rest configure other stages, the DAG or the tracking store)
SHAPING_SECTIONS = ("data", "model", "train")
NOT_SHAPING = ("data.root", "data.mirror_dir", "data.chunk_mb", "train.storage_path")


def run_name(kind: str, *parts: Any) -> str:
    """``train-stvfm-full``, ``baseline-stid``, ``sweep-variant-full``, ``report``: what the run is, no random words."""
    return "-".join([kind, *(str(p) for p in parts if p not in (None, ""))])


def run_tags(params: Params, dataset: str, kind: str, root: str | Path, **extra: Any) -> dict[str, str]:
    """The one tag schema of every run: ``stvfm.kind|dataset|profile|profile_reason|git_commit`` +
    ``stvfm.<extra key>``."""
    tags = {
        "stvfm.kind": kind,
        "stvfm.dataset": dataset,
        "stvfm.profile": params.profile,
        "stvfm.profile_reason": params.profile_reason or "-",
        "stvfm.git_commit": git_commit(root),
    }
    tags.update({f"stvfm.{k}": str(v) for k, v in extra.items() if v is not None})
    return tags


def shaping_params(params: Params, dataset: str) -> dict[str, str]:
    """The params that shaped a training run on ``dataset``: data windows/split/scaler (the synthetic city's knobs
    only for synthetic datasets), model.*, train.*, plus ``dataset``, ``profile`` and why (``profile_reason``)."""
    flat = flatten({k: dataclasses.asdict(getattr(params, k)) for k in SHAPING_SECTIONS})
    synthetic = dataset.startswith("synthetic")
    out = {"dataset": dataset, "profile": params.profile, "profile_reason": params.profile_reason or "-"}
    for k, v in flat.items():
        if k in NOT_SHAPING or any(k.startswith(n + ".") for n in NOT_SHAPING):
            continue
        if k.startswith("data.synthetic.") and not synthetic:
            continue
        if k.startswith("model.stid.") and params.model.arch != "stid":  # STID's own knobs shape only STID runs
            continue
        out[k] = clean_tag(v)
    return out


def log_params(params: Params, dataset: str | None = None) -> None:
    """Log :func:`shaping_params` (not the whole params file) in the active run."""
    import mlflow

    items = list(shaping_params(params, dataset or "").items())
    if dataset is None:
        items = [kv for kv in items if kv[0] != "dataset"]
    for i in range(0, len(items), 90):
        mlflow.log_params(dict(items[i : i + 90]))


def timed_run(
    experiment_id: str,
    name: str,
    tags: Mapping[str, str],
    started_at: float,
    ended_at: float | None = None,
    status: str = "FINISHED",
):
    """Create a run whose start time is ``started_at`` (unix s); returns ``(run_id, finish)``, where ``finish()`` ends
    it at ``ended_at`` (or now). MLflow's own start/end would be the time of logging, not of the work."""

    import mlflow

    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, start_time=int(started_at * 1000), tags=dict(tags), run_name=name)

    def finish(st: str = status) -> None:
        client.set_terminated(run.info.run_id, st, end_time=int((ended_at or time.time()) * 1000))

    return run.info.run_id, finish


def write_experiment_summary(params: Params, dataset: str, root: str | Path) -> str | None:
    """Set the experiment's description (``mlflow.note.content``, shown on the experiment page) to a table of the
    key metrics of its latest run per name, so the comparison is visible without picking columns. Returns it."""
    import mlflow

    exp_id = setup(params, dataset, root)
    client = mlflow.MlflowClient()
    runs = client.search_runs([exp_id], order_by=["attributes.start_time DESC"], max_results=500)
    latest: dict[str, Any] = {}
    for r in runs:
        if r.data.tags.get("stvfm.kind") in (None, "report", "report-summary") or r.info.status != "FINISHED":
            continue
        latest.setdefault(r.info.run_name, r)
    if not latest:
        return None
    rows = sorted(latest.values(), key=lambda r: r.data.metrics.get("test_mae", math.inf))
    top = [r for r in rows if "test_mae" in r.data.metrics][:4]
    lines = [
        "Test MAE / RMSE (best first): "
        + "; ".join(
            f"{r.info.run_name} {r.data.metrics['test_mae']:.3f} / {r.data.metrics.get('test_rmse', math.nan):.3f}"
            for r in top
        )
        + (" …" if len(rows) > len(top) else ""),
        "",
        "Latest finished run per name, original scale, written by the report stage:",
        "",
        "| run | kind | profile | test_mae | test_rmse |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.data.metrics

        def f(k: str, m: dict = m) -> str:
            return f"{m[k]:.4f}" if k in m else "–"

        lines.append(
            f"| {r.info.run_name} | {r.data.tags.get('stvfm.kind')} | {r.data.tags.get('stvfm.profile', '–')} "
            f"| {f('test_mae')} | {f('test_rmse')} |"
        )
    text = "\n".join(lines)
    client.set_experiment_tag(exp_id, "mlflow.note.content", text)
    return text


def log_to_run(
    run_id: str,
    metrics: Mapping[str, float],
    *,
    per_step: Iterable[Mapping[str, Any]] = (),
    artifacts: Iterable[tuple[str | Path, str]] = (),
) -> None:
    """Add metrics (+ per-step test metrics as steps ``test_*_by_step``) and artifacts ``(path, folder)`` to an
    existing run through the client, so the run keeps its own start/end times."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for r in per_step:
        batch += [
            Metric("test_mae_by_step", float(r["mae"]), now, int(r["step"])),
            Metric("test_rmse_by_step", float(r["rmse"]), now, int(r["step"])),
        ]
    client = mlflow.MlflowClient()
    client.log_batch(run_id, metrics=batch)
    for path, folder in artifacts:
        path = Path(path)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), folder)
        elif path.is_file():
            client.log_artifact(run_id, str(path), folder)


def log_history(history: Iterable[Mapping[str, float]]) -> int:
    """Per-epoch metrics, one batch per epoch, step = epoch: each epoch exactly once (the history comes from the
    final checkpoint, so epochs replayed after a worker restart appear once)."""
    import mlflow

    n = 0
    for rec in history:
        ep = int(rec["epoch"])
        m = {
            k: float(v)
            for k, v in rec.items()
            if k not in ("epoch", "started_at") and isinstance(v, (int, float)) and math.isfinite(v)
        }
        mlflow.log_metrics(m, step=ep)
        n += 1
    return n


# ---------------------------------------------------------------- one run per result (baselines, sweeps, reports)
def enabled() -> bool:
    return os.environ.get("STVFM_NO_MLFLOW", "") not in ("1", "true", "yes")


def log_result(
    params: Params,
    dataset: str,
    root: str | Path,
    *,
    run_name: str,
    kind: str,
    run_params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    per_step: list[dict] | None = None,
    history: list[dict] | None = None,
    artifacts: Iterable[str | Path] = (),
    tags: dict[str, str] | None = None,
    started_at: float | None = None,
    ended_at: float | None = None,
) -> str | None:
    """One MLflow run: params, metrics (+ per-step test metrics as steps, + per-epoch history with 1-based epoch
    steps), artifacts. The run's start/end are ``started_at``/``ended_at`` (unix s; the wall clock of the fit it
    records), tags follow :func:`run_tags`. Returns the run id."""
    if not enabled():
        return None
    import mlflow
    from mlflow.entities import Metric, Param

    exp_id = setup(params, dataset, root)
    now = time.time()
    all_tags = run_tags(params, dataset, kind, root, **{k.removeprefix("stvfm."): v for k, v in (tags or {}).items()})
    run_id, finish = timed_run(
        exp_id,
        run_name,
        all_tags,
        started_at if started_at is not None else now,
        ended_at if ended_at is not None else now,
    )
    client = mlflow.MlflowClient()
    try:
        items = [
            (k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)[:6000])
            for k, v in {"dataset": dataset, "profile": params.profile, **(run_params or {})}.items()
        ]
        batch_p = [Param(k, v) for k, v in items]
        ms = int(now * 1000)
        batch = [Metric(k, float(v), ms, 0) for k, v in (metrics or {}).items() if v is not None]
        for r in per_step or []:
            batch += [
                Metric("test_mae_by_step", float(r["mae"]), ms, int(r["step"])),
                Metric("test_rmse_by_step", float(r["rmse"]), ms, int(r["step"])),
            ]
        for h in history or []:
            e = int(h.get("epoch", 0))
            batch += [
                Metric(k, float(h[k]), ms, e) for k in ("train_loss", "val_loss", "val_mae", "val_rmse") if k in h
            ]
        for i in range(0, max(len(batch_p), len(batch)), 90):
            client.log_batch(run_id, metrics=batch[i : i + 90], params=batch_p[i : i + 90])
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
