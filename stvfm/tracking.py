"""MLflow tracking and model registry (the only library module that imports MLflow).

Store: ``tracking.tracking_uri`` from params, else env ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``;
artifacts of a sqlite store go to ``mlartifacts/`` beside the DB (set as each experiment's artifact_location). One
experiment per dataset (``tracking.experiment_prefix + dataset``). The registered model ``stvfm-<dataset>`` gets
alias ``champion`` only when a new version's validation MAE beats the current champion's.

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
import logging
import math
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

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
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides (--artifacts-destination)


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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
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


def _clean(v: Any) -> str:
    s = "null" if v is None else str(v)
    return s[:6000]


# params sections that shape a training run (the rest configure other stages, the DAG or the tracking store)
SHAPING_SECTIONS = ("data", "model", "train")
NOT_SHAPING = ("data.root", "data.mirror_dir", "data.chunk_mb", "train.storage_path")


def run_name(kind: str, *parts: Any) -> str:
    """``train-stvfm-full``, ``baseline-stid``, ``sweep-variant-full``, ``report``: what the run is, no random words."""
    return "-".join([kind, *(str(p) for p in parts if p not in (None, ""))])


def run_tags(params: Params, dataset: str, kind: str, root: str | Path, **extra: Any) -> dict[str, str]:
    """The one tag schema of every run: ``stvfm.kind|dataset|profile|git_commit`` + ``stvfm.<extra key>``."""
    tags = {"stvfm.kind": kind, "stvfm.dataset": dataset, "stvfm.profile": params.profile,
            "stvfm.git_commit": git_commit(root)}
    tags.update({f"stvfm.{k}": str(v) for k, v in extra.items() if v is not None})
    return tags


def shaping_params(params: Params, dataset: str) -> dict[str, str]:
    """The params that shaped a training run on ``dataset``: data windows/split/scaler (the synthetic city's knobs
    only for synthetic datasets), model.*, train.*, plus ``dataset`` and ``profile``."""
    flat = flatten({k: dataclasses.asdict(getattr(params, k)) for k in SHAPING_SECTIONS})
    synthetic = dataset.startswith("synthetic")
    out = {"dataset": dataset, "profile": params.profile}
    for k, v in flat.items():
        if k in NOT_SHAPING or any(k.startswith(n + ".") for n in NOT_SHAPING):
            continue
        if k.startswith("data.synthetic.") and not synthetic:
            continue
        if k.startswith("model.stid.") and params.model.arch != "stid":  # STID's own knobs shape only STID runs
            continue
        out[k] = _clean(v)
    return out


def log_params(params: Params, dataset: str | None = None) -> None:
    """Log :func:`shaping_params` (not the whole params file) in the active run."""
    import mlflow

    items = list(shaping_params(params, dataset or "").items())
    if dataset is None:
        items = [kv for kv in items if kv[0] != "dataset"]
    for i in range(0, len(items), 90):
        mlflow.log_params(dict(items[i:i + 90]))


def timed_run(experiment_id: str, name: str, tags: Mapping[str, str], started_at: float, ended_at: float | None = None,
              status: str = "FINISHED"):
    """Create a run whose start time is ``started_at`` (unix s); returns ``(run_id, finish)``, where ``finish()`` ends
    it at ``ended_at`` (or now). MLflow's own start/end would be the time of logging, not of the work."""
    import time

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
    lines = ["Test MAE / RMSE (best first): " + "; ".join(
                 f"{r.info.run_name} {r.data.metrics['test_mae']:.3f} / {r.data.metrics.get('test_rmse', math.nan):.3f}"
                 for r in top) + (" …" if len(rows) > len(top) else ""),
             "", "Latest finished run per name, original scale, written by the report stage:", "",
             "| run | kind | profile | test_mae | test_rmse |", "|---|---|---|---|---|"]
    for r in rows:
        m = r.data.metrics
        f = lambda k: f"{m[k]:.4f}" if k in m else "–"
        lines.append(f"| {r.info.run_name} | {r.data.tags.get('stvfm.kind')} | {r.data.tags.get('stvfm.profile', '–')} "
                     f"| {f('test_mae')} | {f('test_rmse')} |")
    text = "\n".join(lines)
    client.set_experiment_tag(exp_id, "mlflow.note.content", text)
    return text


def log_history(history: Iterable[Mapping[str, float]]) -> int:
    """Per-epoch metrics, one batch per epoch, step = epoch: each epoch exactly once (the history comes from the
    final checkpoint, so epochs replayed after a worker restart appear once)."""
    import mlflow

    n = 0
    for rec in history:
        ep = int(rec["epoch"])
        m = {k: float(v) for k, v in rec.items()
             if k not in ("epoch", "started_at") and isinstance(v, (int, float)) and math.isfinite(v)}
        mlflow.log_metrics(m, step=ep)
        n += 1
    return n


def log_and_register_model(config: dict[str, Any], state_dict: Mapping[str, Any], dataset: str, val_mae: float, *,
                           input_example: dict[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
                           register: bool = True) -> dict[str, Any]:
    """Log a safe model version in the active run — an MLflow pyfunc written as "models from code"
    (``stvfm/serving/mlflow_model.py``) whose artifacts are ``config.json`` + ``weights.safetensors`` (no pickles) —
    register it as ``stvfm-<dataset>`` with ``tags`` and a model card as its description, and move ``champion``
    if its validation MAE is lower than the champion's."""
    import tempfile

    import mlflow
    import mlflow.pyfunc

    from stvfm.model_version import CONFIG_FILE, FORMAT, WEIGHTS_FILE, model_card, write_version

    name = registered_name(dataset)
    code = Path(__file__).resolve().parent / "serving" / "mlflow_model.py"
    from stvfm.serving.pyfunc import signature

    with tempfile.TemporaryDirectory(prefix="stvfm-version-") as tmp:
        write_version(tmp, config, dict(state_dict))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code),
            artifacts={"config": str(Path(tmp) / CONFIG_FILE), "weights": str(Path(tmp) / WEIGHTS_FILE)},
            signature=signature(config), input_example=input_example, pip_requirements=[],
            registered_model_name=name if register else None, metadata={"stvfm_format": FORMAT})
    res: dict[str, Any] = {"model_uri": info.model_uri, "registered_model": None, "version": None, "champion": False}
    if not register:
        return res
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    all_tags = {k: _clean(v) for k, v in (tags or {}).items()}
    all_tags[VAL_TAG] = repr(float(val_mae))
    for k, v in all_tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.update_model_version(name, version, description=model_card(config, all_tags))
    res.update(registered_model=name, version=version)  # str, as the registry API takes it
    res["champion"] = promote_if_better(name, version, float(val_mae))
    return res


def record_test_metrics(name: str, version: str, mae: float, rmse: float) -> None:
    """Tag a registered version with its test MAE/RMSE and put them into its model card."""
    import mlflow

    from stvfm.model_version import with_test_metrics

    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, "test_mae", repr(float(mae)))
    client.set_model_version_tag(name, version, "test_rmse", repr(float(rmse)))
    mv = client.get_model_version(name, version)
    client.update_model_version(name, version, description=with_test_metrics(mv.description or "", mae, rmse))


def champion_val(name: str) -> tuple[str | None, float]:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, math.inf
    try:
        return mv.version, float(mv.tags.get(VAL_TAG, "inf"))
    except ValueError:
        return mv.version, math.inf


def promote_if_better(name: str, version: str, val_mae: float) -> bool:
    import mlflow

    cur, cur_val = champion_val(name)
    if cur is not None and not val_mae < cur_val:
        log.info("champion stays %s v%s (its val_mae %.4g is not worse than the new %.4g)", name, cur, cur_val,
                 val_mae)
        return False
    mlflow.MlflowClient().set_registered_model_alias(name, CHAMPION, version)
    log.info("champion -> %s v%s (val_mae %.4g, was %s)", name, version, val_mae, cur_val)
    return True
