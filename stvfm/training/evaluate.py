"""Evaluate the best-validation checkpoint on the test split (appendix Eqs. 4-5, original scale).

Writes ``metrics/<ds>/stvfm.json`` (only ``mae``/``rmse``: the DVC metric that ``dvc metrics show`` compares),
``metrics/<ds>/test.json`` (the full record: mae, rmse, per_step, per_channel, scale, profile, pretrained_backbone,
n_windows, best_epoch (1-based), dataset, plus the persistence reference on the same windows), ``per_step.csv`` and
PNGs under ``metrics/<ds>/plots/`` (forecast vs truth maps for ``eval.n_maps`` test windows, learning curves). Metrics
are ×1e3 where the dataset table says so (Crowd, Cellular), as the paper reports them. With tracking on, everything is
also logged into the training run.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from stvfm import tracking
from stvfm.config import Params
from stvfm.data.windows import WindowDataset
from stvfm.errors import CheckpointError, DataError
from stvfm.io import atomic_path, read_json, write_json
from stvfm.metrics import ChannelErrors, ErrorAccumulator
from stvfm.paths import dataset_paths
from stvfm.plots import forecast_map, learning_curves, per_step_curve
from stvfm.serving.registry import record_test_metrics
from stvfm.training.checkpoint import load_checkpoint
from stvfm.training.components import build_model_from_meta, is_pretrained, load_scaler

log = logging.getLogger(__name__)
BEST_KEYS = ("model_state", "model_cfg", "grid", "channels", "history", "horizon", "dataset")


def load_best(path: str | Path):
    best = load_checkpoint(path, require=BEST_KEYS)
    model, _ = build_model_from_meta(best)
    try:
        model.load_state_dict(best["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint '{path}' does not match its model_cfg: {str(e)[:300]}") from e
    return model.eval(), best


@torch.no_grad()
def predict_split(
    model,
    ds,
    scaler,
    batch_size: int,
    bf16: bool = False,
    keep: set[int] = frozenset(),
    channels: ChannelErrors | None = None,
):
    """Returns (ErrorAccumulator model, ErrorAccumulator persistence, {index: (truth, pred)} for ``keep``); the
    model's per-channel errors go into ``channels`` when given."""
    acc = ErrorAccumulator(ds.horizon)
    pers = ErrorAccumulator(ds.horizon)
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    i0 = 0
    for b in DataLoader(ds, batch_size=batch_size, shuffle=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(b["x"], b["x_flow"], time_ids=b.get("time_ids"))
        y = scaler.inverse(b["y"].float(), channel_axis=-3)
        yh = scaler.inverse(out.st.float(), channel_axis=-3)
        last = scaler.inverse(b["x"][:, -1:].float(), channel_axis=-3).expand_as(y)
        acc.update(y, yh)
        pers.update(y, last)
        if channels is not None:
            channels.update(y, yh)
        for j in range(y.shape[0]):
            if i0 + j in keep:
                kept[i0 + j] = (y[j].numpy(), yh[j].numpy())
        i0 += y.shape[0]
    return acc, pers, kept


def write_per_step_csv(path: Path, per_step: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "mae", "rmse"])
        w.writeheader()
        for r in per_step:
            w.writerow({k: r[k] for k in ("step", "mae", "rmse")})


def run_evaluate(params: Params, dataset: str, root: str | Path = ".", *, track: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    root = Path(root).resolve()
    paths = dataset_paths(dataset, root, params.data.root)
    model, best = load_best(paths.model_dir / "best.pt")
    scaler = load_scaler(paths, best.get("scaler_kind"))
    ds = WindowDataset(paths, "test", scaler=scaler)
    if len(ds) == 0:
        raise DataError("the test split has no windows", dataset=dataset, path=str(paths.windows))
    if list(ds.grid) != list(best["grid"]) or ds.channels != int(best["channels"]):
        raise DataError(
            f"test data is {ds.grid[0]}x{ds.grid[1]}x{ds.channels} but the checkpoint was trained on "
            f"{best['grid'][0]}x{best['grid'][1]}x{best['channels']}; retrain (dvc repro train)",
            dataset=dataset,
            path=str(paths.model_dir / "best.pt"),
        )
    n_maps = max(0, min(params.eval.n_maps, len(ds)))
    keep = set(np.linspace(0, len(ds) - 1, n_maps).astype(int).tolist()) if n_maps else set()
    chan = ChannelErrors()
    acc, pers, kept = predict_split(
        model, ds, scaler, params.eval.batch_size, bool(best["model_cfg"].get("bf16")), keep, chan
    )
    meta = read_json(paths.split_meta)
    factor = 1e3 if meta.get("scale_1e3") else 1.0
    train_info = read_json(paths.model_dir / "train.json") if (paths.model_dir / "train.json").is_file() else {}
    per_step = [{"step": r["step"], "mae": r["mae"] * factor, "rmse": r["rmse"] * factor} for r in acc.per_step()]
    result = {
        "dataset": dataset,
        "mae": acc.mae * factor,
        "rmse": acc.rmse * factor,
        "per_step": per_step,
        "per_channel": chan.result(meta.get("channel_names") or [], factor),
        "profile": train_info.get("profile", params.profile),
        "scale": factor,
        "n_windows": len(ds),
        "pretrained_backbone": is_pretrained(best.get("backbone", {})),
        "backbone": best.get("backbone", {}).get("name", best["model_cfg"].get("backbone")),
        "arch": best.get("arch"),
        "variant": best["model_cfg"].get("variant"),
        "best_epoch": best.get("epoch"),
        "val_mae": (best.get("val") or {}).get("val_mae"),
        "persistence": {"mae": pers.mae * factor, "rmse": pers.rmse * factor},
    }
    mdir = paths.metrics_dir
    pdir = mdir / "plots"
    with atomic_path(pdir) as tmp:
        tmp.mkdir(parents=True)
        names = meta.get("channel_names") or []
        times = ds.time
        for idx, (truth, pred) in sorted(kept.items()):
            when = str(times[idx])[:16] if times is not None else f"window {idx}"
            forecast_map(
                truth,
                pred,
                tmp / f"forecast_{idx:04d}.png",
                title=f"{dataset} test, first target {when}",
                channel_name=names[0] if names else "",
            )
        hist = paths.model_dir / "history.json"
        if hist.is_file():
            learning_curves(read_json(hist), tmp / "learning_curves.png", title=dataset)
        per_step_curve(per_step, tmp / "per_step.png", title=f"{dataset}: test error per forecast step")
    write_per_step_csv(mdir / "per_step.csv", per_step)
    write_json(mdir / "test.json", result)
    write_json(mdir / "stvfm.json", {"mae": result["mae"], "rmse": result["rmse"]})  # the DVC metric: numbers only
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if track:
        _log(params, dataset, root, paths, result)
    return result


def _log(params: Params, dataset: str, root: Path, paths, result: dict[str, Any]) -> None:
    """Log the test metrics into the training run (through the client: the run keeps its own end time), or into
    an ``evaluate-<dataset>`` run when there is no training run."""
    exp_id = tracking.setup(params, dataset, root)
    tj = paths.model_dir / "train.json"
    run_id = read_json(tj).get("run_id") if tj.is_file() else None
    finish = None
    if run_id is None:
        run_id, finish = tracking.timed_run(
            exp_id,
            tracking.run_name("evaluate", dataset),
            tracking.run_tags(params, dataset, "evaluate", root),
            time.time() - result.get("seconds", 0.0),
        )
    tracking.log_to_run(
        run_id,
        {
            "test_mae": result["mae"],
            "test_rmse": result["rmse"],
            "test_persistence_mae": result["persistence"]["mae"],
            "test_persistence_rmse": result["persistence"]["rmse"],
        },
        per_step=result["per_step"],
        artifacts=[
            (paths.metrics_dir / "test.json", "metrics"),
            (paths.metrics_dir / "per_step.csv", "metrics"),
            (paths.metrics_dir / "plots", "plots"),
        ],
    )
    if finish is not None:
        finish()
    if tj.is_file():
        model = read_json(tj).get("model") or {}
        if model.get("version"):
            record_test_metrics(model["registered_model"], model["version"], result["mae"], result["rmse"])
