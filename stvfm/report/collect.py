"""Gather one dataset's results (stage outputs) and the paper's matching rows into one dict for the report.

Reads (all optional except the split meta): ``data/split/<ds>/meta.json``, ``metrics/<ds>/test.json`` (evaluate),
``metrics/<ds>/baselines.json`` + ``baselines_detail.json`` (baselines), ``metrics/<ds>/sweeps/*.json`` (sweeps, only
the variants/backbones listed in ``params.sweeps``), ``models/<ds>/history.json`` / ``train.json`` (train).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from stvfm import paper
from stvfm.config import Params, SweepConfig
from stvfm.datasets.registry import DATASETS, get_spec
from stvfm.errors import DataError
from stvfm.io import read_json
from stvfm.paths import dataset_paths
from stvfm.report.relation import Relation, relation

# our result name -> the paper's Table 2 method
PAPER_METHOD = {"persistence": None, "ha": "HA", "arima": "ARIMA", "stid": "STID", "full": "ST-VFM"}
LABEL = {"persistence": "Persistence", "ha": "HA", "arima": "ARIMA", "stid": "STID", "full": "ST-VFM (full)"}


def _maybe(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def data_span(meta: dict) -> dict[str, Any]:
    start = dt.datetime.fromisoformat(str(meta["start"]))
    step = dt.timedelta(minutes=int(meta["interval_minutes"]))
    end = start + step * (int(meta["T"]) - 1)
    return {
        "start": start.isoformat(timespec="minutes"),
        "end": end.isoformat(timespec="minutes"),
        "steps": int(meta["T"]),
        "interval_minutes": int(meta["interval_minutes"]),
        "days": round(int(meta["T"]) * step.total_seconds() / 86400, 1),
    }


def collect(dataset: str, params: Params, root: str | Path = ".") -> dict[str, Any]:
    root = Path(root)
    paths = dataset_paths(dataset, root, params.data.root)
    spec = get_spec(dataset, params.local_sources)
    if not paths.split_meta.is_file():
        raise DataError(
            f"no split outputs to report on: run `dvc repro report@{dataset}` (or the data stages, "
            f"`stvfm data all {dataset}`) first",
            dataset=dataset,
            path=str(paths.split_meta),
        )
    meta = read_json(paths.split_meta)
    span = data_span(meta)
    rel: Relation = relation(spec, span, meta)
    paper_ds = rel.paper_dataset
    compare = paper_ds if rel.comparable else None  # paper rows side by side only for the paper's file and protocol
    test = _maybe(paths.metrics_dir / "test.json")
    baselines = _maybe(paths.metrics_dir / "baselines.json") or {}
    detail = (_maybe(paths.metrics_dir / "baselines_detail.json") or {}).get("baselines", {})
    sw = SweepConfig.from_params(params.sweeps)
    sweeps = {"variant": {}, "backbone": {}}
    for kind, values in (("variant", sw.variants), ("backbone", sw.backbones)):
        for v in values:
            r = _maybe(paths.sweep_result(kind, v))
            if r is not None:
                sweeps[kind][v] = r
    train = _maybe(paths.model_dir / "train.json") or {}
    history = _maybe(paths.model_dir / "history.json") or []

    ours: dict[str, dict[str, Any]] = {}
    for m in ("persistence", "ha", "arima", "stid"):
        if m in baselines:
            ours[m] = {
                "mae": baselines[m]["mae"],
                "rmse": baselines[m]["rmse"],
                "per_step": detail.get(m, {}).get("per_step"),
                "per_channel": detail.get(m, {}).get("per_channel"),
                **spread(baselines[m]),
            }
    if test:
        ours["full"] = {
            "mae": test["mae"],
            "rmse": test["rmse"],
            "per_step": test.get("per_step"),
            "per_channel": test.get("per_channel"),
            **spread(test),
        }
    rows = []
    for m, r in ours.items():
        p = paper.lookup("table2_main", compare, method=PAPER_METHOD[m]) if compare and PAPER_METHOD[m] else None
        rows.append({"key": m, "label": LABEL[m], "paper": p, **r})
    variants = []
    for v, r in sweeps["variant"].items():
        p = paper.lookup("table3_ablation", compare, variant=v) if compare else None
        variants.append(
            {
                "key": v,
                "mae": r["mae"],
                "rmse": r["rmse"],
                "paper": p,
                "seconds": r.get("seconds"),
                "pretrained": r.get("pretrained_backbone"),
                "backbone": (r.get("model") or {}).get("backbone"),
            }
        )
    backbones = []
    for b, r in sweeps["backbone"].items():
        p = paper.lookup("appendix_table3_backbones", compare, backbone=b) if compare else None
        backbones.append(
            {
                "key": b,
                "mae": r["mae"],
                "rmse": r["rmse"],
                "paper": p,
                "seconds": r.get("seconds"),
                "pretrained": r.get("pretrained_backbone"),
                "vfm_blocks": (r.get("model") or {}).get("vfm_blocks"),
            }
        )
    table2 = [r for r in paper.read_rows("table2_main") if r["dataset"] == paper_ds] if paper_ds else []
    backbone_name = (test or {}).get("backbone") or (train.get("model") or {}).get("backbone") or params.model.backbone
    return {
        "dataset": dataset,
        "title": spec.title,
        "kind": spec.kind,
        "paper_dataset": paper_ds,
        "paper_title": DATASETS[paper_ds].title if paper_ds else None,
        "level": rel.level,
        "comparable": rel.comparable,
        "relation": rel.label,
        "comparability": rel.sentence,
        "differs": rel.differs,
        "disagreements": rel.disagreements,
        "protocol": meta.get("protocol") or "ratio",
        "span": span,
        "grid": meta.get("grid"),
        "channels": meta.get("channels"),
        "scale": 1e3 if meta.get("scale_1e3") else 1.0,
        "n_windows": meta.get("n_windows"),
        "test": test,
        "rows": rows,
        "variants": variants,
        "backbones": backbones,
        "table2": table2,
        "history": history,
        "stid_history": detail.get("stid", {}).get("history"),
        "baseline_settings": {m: d.get("settings") for m, d in detail.items()},
        "baseline_seconds": {m: d.get("seconds") for m, d in detail.items()},
        "pretrained": (test or {}).get("pretrained_backbone"),
        "backbone": backbone_name,
        "variant": (test or {}).get("variant"),
        "train": train,
        "channel_names": meta.get("channel_names") or [],
        "profile": (test or {}).get("profile") or train.get("profile"),
        "training": training_profile(train, test),
        "verdict": train.get("verdict"),
    }


def spread(r: dict[str, Any]) -> dict[str, Any]:
    """Spread over seeds where a result has several: ``mae_std``/``rmse_std`` and ``seeds`` (a count or a list)."""
    out = {k: r[k] for k in ("mae_std", "rmse_std") if isinstance(r.get(k), (int, float))}
    seeds = r.get("seeds", r.get("n_seeds"))
    if seeds is not None:
        out["n_seeds"] = len(seeds) if isinstance(seeds, (list, tuple)) else int(seeds)
    return out


def training_profile(train: dict[str, Any], test: dict[str, Any] | None) -> dict[str, Any] | None:
    """What trained the ST-VFM model (recorded by the train stage in train.json): profile, epochs × steps, lr,
    blocks."""
    if not train:
        return None
    s = dict(train.get("setup") or {})
    s.setdefault("profile", train.get("profile") or (test or {}).get("profile"))
    s["epochs_run"], s["best_epoch"] = train.get("epochs_run"), train.get("best_epoch")
    bb = train.get("backbone") or {}
    s.setdefault("backbone", bb.get("name"))
    if s.get("vfm_blocks") is None:
        s["vfm_blocks"] = bb.get("blocks_used")
    return s


def gap(ours: float, paper_value: float | None) -> float | None:
    """Relative gap in percent, (ours - paper) / paper; None when the paper has no number."""
    if paper_value is None or paper_value != paper_value or paper_value == 0:
        return None
    return (ours - paper_value) / paper_value * 100.0
