"""Train one model in this process and score it: validation (model selection) and, when asked, test — read once per
final model. Also the cheap references on the same windows (persistence, HA fitted on train).

Used by the real-data ablation (``pipelines/ablation.py``, ``make ablation-real``), the quality test
(``tests/quality/``) and ``benchmarks/bench_quality.py``. Same components, loop, early stopping and best-validation
checkpoint as the train stage (``train.use_ray: false`` path); no MLflow, no files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from stvfm.baselines.common import load_series_split, score
from stvfm.baselines.ha import HistoricalAverage
from stvfm.baselines.persistence import persistence_forecast
from stvfm.config import Params
from stvfm.paths import dataset_paths
from stvfm.training.components import build_components
from stvfm.training.loop import EpochResult, LoopTrainer, loss_fn_for, unwrap
from stvfm.training.seed import seed_everything


def _figures(acc) -> dict[str, float]:
    return {"mae": float(acc.mae), "rmse": float(acc.rmse)}


def fit_and_score(
    params: Params,
    dataset: str,
    root: str | Path = ".",
    *,
    test: bool = False,
    threads: int | None = None,
    on_epoch: Callable[[EpochResult, LoopTrainer], None] | None = None,
) -> dict[str, Any]:
    """Train ``params`` on ``dataset`` (plain loop), restore the best-validation weights, return
    ``{"val": {mae, rmse}, "test": {...} | None, "best_epoch", "epochs_run", "fit_s", "epoch_s"}`` (original scale)."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        cfg = params.train
        seed_everything(cfg.seed)
        comp = build_components(params, dataset, root, splits=("train", "val", "test") if test else ("train", "val"))
        g = torch.Generator().manual_seed(cfg.seed)
        train = DataLoader(comp.datasets["train"], batch_size=cfg.batch_size, shuffle=True, generator=g)
        val = DataLoader(comp.datasets["val"], batch_size=params.eval.batch_size)
        tr = LoopTrainer(
            comp.model,
            train,
            val,
            cfg,
            loss_fn=loss_fn_for(params, comp.scaler),
            inverse=comp.inverse,
            bf16=comp.bf16,
            meta=comp.meta,
        )
        st = tr.fit(on_epoch)
        fit_s = time.perf_counter() - t0
        if tr.best_model_state is not None:
            unwrap(tr.model).load_state_dict(tr.best_model_state, strict=False)
        _, v = tr.validate(val)
        out: dict[str, Any] = {
            "dataset": dataset,
            "val": _figures(v),
            "test": None,
            "best_epoch": st.best_epoch,
            "epochs_run": st.next_epoch,
            "fit_s": round(fit_s, 1),
            "epoch_s": round(sum(h["epoch_seconds"] for h in st.history) / max(1, len(st.history)), 2),
            "threads": torch.get_num_threads(),
        }
        if test:
            _, te = tr.validate(DataLoader(comp.datasets["test"], batch_size=params.eval.batch_size))
            out["test"] = _figures(te)
        return out
    finally:
        torch.set_num_threads(old)


def scores_line(study: str, dataset: str, name: str, r: dict[str, Any]) -> str:
    """One log line of a study's run (a ``fit_and_score(..., test=True)`` result): val and test MAE / RMSE, fit time."""
    v, t = r["val"], r["test"]
    return (
        f"{study} {dataset} {name}: val MAE {v['mae']:.3f} RMSE {v['rmse']:.3f} | test MAE {t['mae']:.3f} "
        f"RMSE {t['rmse']:.3f} ({r['fit_s']:.0f} s)"
    )


def reference_scores(params: Params, dataset: str, root: str | Path = ".", split: str = "val") -> dict[str, dict]:
    """Persistence and HA (time-of-day mean of the train split) on ``split``'s windows, original scale."""
    data = load_series_split(dataset_paths(dataset, Path(root), params.data.root))
    h, o = data.history, data.horizon
    ha = HistoricalAverage.fit(data.series, data.times, data.interval_minutes, data.train_range, "day")
    res = {
        "persistence": score(data, lambda s, t0: persistence_forecast(s, t0, h, o), split=split),
        "ha": score(data, lambda s, t0: ha.forecast(t0, h, o), split=split),
    }
    return {k: {"mae": float(r["mae"]), "rmse": float(r["rmse"])} for k, r in res.items()}


__all__ = ["fit_and_score", "reference_scores"]
