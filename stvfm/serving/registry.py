"""The MLflow model registry of ST-VFM model versions: log a version (a "models from code" pyfunc whose artifacts are
``config.json`` + ``weights.safetensors``), register it as ``stvfm-<dataset>``, keep its model card and test metrics,
move the ``champion`` alias only when a version's validation MAE beats the champion's, and download a version back.

Runs, experiments and the store are :mod:`stvfm.tracking`'s; this module adds the registered models.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.errors import DataError
from stvfm.serving.version import CONFIG_FILE, FORMAT, WEIGHTS_FILE, model_card, with_test_metrics, write_version
from stvfm.tracking import clean_tag

log = logging.getLogger(__name__)
CHAMPION = "champion"
VAL_TAG = "val_mae"
DIGEST_PARTS = ("config", "weights")  # version tags config_sha256 / weights_sha256, written at registration
MODEL_CODE = Path(__file__).resolve().parent / "mlflow_model.py"  # the pyfunc's "models from code" file


def signature(config: dict[str, Any]):
    """Tensor-based signature of a version: named inputs ``flow`` (+ ``last_time``), output (B, horizon, H, W, C)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    h, w = (int(v) for v in config["grid"])
    c = int(config["channels"])
    inputs = [TensorSpec(np.dtype(np.float32), (-1, -1, h, w, c), "flow")]
    if config.get("time_identity"):
        inputs.append(TensorSpec(np.dtype(np.int64), (-1,), "last_time"))
    out = Schema([TensorSpec(np.dtype(np.float32), (-1, int(config["horizon"]), h, w, c))])
    return ModelSignature(inputs=Schema(inputs), outputs=out)


def registered_name(dataset: str) -> str:
    return f"stvfm-{dataset}"


def log_and_register_model(
    config: dict[str, Any],
    state_dict: Mapping[str, Any],
    dataset: str,
    val_mae: float,
    *,
    input_example: dict[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    register: bool = True,
) -> dict[str, Any]:
    """Log a safe model version in the active run — an MLflow pyfunc written as "models from code"
    (``stvfm/serving/mlflow_model.py``) whose artifacts are ``config.json`` + ``weights.safetensors`` (no pickles) —
    register it as ``stvfm-<dataset>`` with ``tags`` and a model card as its description, and move ``champion``
    if its validation MAE is lower than the champion's."""
    import mlflow
    import mlflow.pyfunc

    name = registered_name(dataset)

    with tempfile.TemporaryDirectory(prefix="stvfm-version-") as tmp:
        write_version(tmp, config, dict(state_dict))
        digest = json.loads((Path(tmp) / CONFIG_FILE).read_text())["digest"]
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"config": str(Path(tmp) / CONFIG_FILE), "weights": str(Path(tmp) / WEIGHTS_FILE)},
            signature=signature(config),
            input_example=input_example,
            pip_requirements=[],
            registered_model_name=name if register else None,
            metadata={"stvfm_format": FORMAT},
        )
    res: dict[str, Any] = {"model_uri": info.model_uri, "registered_model": None, "version": None, "champion": False}
    if not register:
        return res
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    all_tags = {k: clean_tag(v) for k, v in (tags or {}).items()}
    all_tags[VAL_TAG] = repr(float(val_mae))
    all_tags.update({f"{k}_sha256": digest[k] for k in DIGEST_PARTS})  # checked again whenever it is loaded
    for k, v in all_tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.update_model_version(name, version, description=model_card(config, all_tags))
    res.update(registered_model=name, version=version)  # str, as the registry API takes it
    res["champion"] = promote_if_better(name, version, float(val_mae))
    return res


def record_test_metrics(name: str, version: str, mae: float, rmse: float) -> None:
    """Tag a registered version with its test MAE/RMSE and put them into its model card."""
    import mlflow

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
        log.info("champion stays %s v%s (its val_mae %.4g is not worse than the new %.4g)", name, cur, cur_val, val_mae)
        return False
    mlflow.MlflowClient().set_registered_model_alias(name, CHAMPION, version)
    log.info("champion -> %s v%s (val_mae %.4g, was %s)", name, version, val_mae, cur_val)
    return True


def fetch_version(uri: str, dst: str | Path) -> Path:
    """Download the model version ``uri`` (``models:/name@alias``, ``models:/name/3``, ``runs:/id/model``) into
    ``dst`` and return the folder holding ``config.json``. Downloading executes nothing."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as e:
        raise DataError(
            f"cannot load model '{uri}': {str(e).splitlines()[0][:300]} "
            f"(train it first, or check MLFLOW_TRACKING_URI / the alias)"
        ) from None
    for cand in (local / "artifacts", local):
        if (cand / CONFIG_FILE).is_file() or (cand / WEIGHTS_FILE).is_file():
            return cand
    return local / "artifacts"


def _model_version(uri: str):
    """The registry's ModelVersion named by ``models:/name@alias`` or ``models:/name/N`` (None for other URIs)."""
    import mlflow

    body = uri[len("models:/") :].strip("/") if uri.startswith("models:/") else ""
    client = mlflow.MlflowClient()
    if "@" in body:
        name, alias = body.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    if body.count("/") == 1 and body.rsplit("/", 1)[1].isdigit():
        return client.get_model_version(*body.rsplit("/", 1))
    return None


def registered_digest(uri: str) -> dict[str, str] | None:
    """The sha256 digest the registry recorded for the version ``uri`` names at registration (tags
    ``config_sha256``/``weights_sha256``), or None (not a registered-version URI, or registered without them)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = _model_version(uri)
    except MlflowException as e:
        raise DataError(f"cannot load model '{uri}': {str(e).splitlines()[0][:300]}") from None
    if mv is None:
        return None
    tags = dict(mv.tags or {})
    got = {k: tags[f"{k}_sha256"] for k in DIGEST_PARTS if f"{k}_sha256" in tags}
    return got or None


def registered_version(uri: str) -> str:
    """``name/version`` of a ``models:/name@alias`` or ``models:/name/N`` URI (else the URI)."""
    if not uri.startswith("models:/"):
        return uri
    body = uri[len("models:/") :].strip("/")
    try:
        import mlflow

        client = mlflow.MlflowClient()
        if "@" in body:
            name, alias = body.split("@", 1)
            return f"{name}/{client.get_model_version_by_alias(name, alias).version}"
    except Exception:  # the version string is informative only
        return uri
    return body
