"""The verdict of a trained model against the simple references on validation: does it beat the time-of-day average
(HA, fitted on train) and persistence on the validation windows, in MAE and RMSE?

One function, :func:`validation_verdict`, called by both train entry points (``pipelines/train.py``, ``stvfm train``)
through :func:`stvfm.training.stage.run_train`'s ``verdict`` hook: it lands in ``train.json`` and the MLflow run, the
entry points print its line last, and the report repeats it. A model that loses says so plainly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stvfm.config import Params
from stvfm.io import read_json
from stvfm.paths import dataset_paths
from stvfm.studies.quality import reference_scores

REFERENCES = {"ha": "HA", "persistence": "persistence"}
NAMES = {"stvfm": "ST-VFM", "stid": "STID"}


def judge(
    model: Mapping[str, float], references: Mapping[str, Mapping[str, float]], *, name: str = "ST-VFM", unit: str = ""
) -> dict[str, Any]:
    """Compare ``model`` ({mae, rmse}) with each reference; the line says who wins, plainly when the model loses."""
    references = {r: references[r] for r in sorted(references, key=lambda r: (r not in REFERENCES, r))}  # HA first
    losses = [(r, m) for r, v in references.items() for m in ("mae", "rmse") if model[m] >= v[m]]
    figures = (
        "; ".join(
            f"{m.upper()} {model[m]:.3f} vs "
            + ", ".join(f"{REFERENCES.get(r, r)} {v[m]:.3f}" for r, v in references.items())
            for m in ("mae", "rmse")
        )
        + unit
    )
    if losses:
        lost = [r for r in references if any(q == r for q, _ in losses)]
        what = ", ".join(f"{REFERENCES.get(r, r)} ({'/'.join(m.upper() for q, m in losses if q == r)})" for r in lost)
        line = (
            f"WARNING: {name} LOSES to {what} on validation ({figures}): this model forecasts no better than "
            "a simple reference; train longer or with another profile (profiles.real for real data)"
        )
    else:
        line = f"{name} beats HA and persistence on validation ({figures})"
    return {
        "loses": bool(losses),
        "lost_to": sorted({r for r, _ in losses}),
        "model": dict(model),
        "references": {r: dict(v) for r, v in references.items()},
        "line": line,
    }


def validation_verdict(params: Params, dataset: str, root: str | Path, val: Mapping[str, float]) -> dict[str, Any]:
    """The verdict of the best epoch's validation metrics (``val_mae``/``val_rmse``, original scale) against HA and
    persistence on the same validation windows (scaled ×1e3 like the paper where the dataset is, as both are)."""
    paths = dataset_paths(dataset, Path(root), params.data.root)
    refs = reference_scores(params, dataset, root, split="val")
    scale = 1e3 if read_json(paths.split_meta).get("scale_1e3") else 1.0
    model = {"mae": float(val["val_mae"]) * scale, "rmse": float(val["val_rmse"]) * scale}
    out = judge(
        model, refs, name=NAMES.get(params.model.arch, params.model.arch), unit=" (×1e3)" if scale != 1.0 else ""
    )
    out["split"] = "val"
    return out
