"""Train a model config with the project's training code and score it on the test split.

Used by the STID baseline (``model.arch=stid``) and by the variant/backbone sweep stages: they must not touch
``models/<ds>/`` (the main train stage's output), so the trained state stays in memory and only the metrics (and
optionally ``out_dir/best.pt``) come back. Training runs the project's loop (:class:`stvfm.training.loop.LoopTrainer`):
in-process through :func:`stvfm.training.run.train_plain`, or with ``train.use_ray: true`` through the Ray Train
wrapper :func:`stvfm.training.ray_train.fit` — the same code as the train stage. Time identities come with every
window (``WindowDataset[i]["time_ids"]``), so STID's clock works on both paths.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvfm.config import Params, with_overrides  # noqa: F401  (with_overrides re-exported)
from stvfm.metrics import ErrorAccumulator
from stvfm.training.checkpoint import best_from_state, save_checkpoint
from stvfm.training.components import build_components
from stvfm.training.loop import LoopTrainer, loss_fn_for
from stvfm.training.run import train_plain
from stvfm.training.seed import seed_everything

log = logging.getLogger(__name__)


def _subset(ds, n: int | None):
    """``n`` evenly spaced windows of ``ds`` (all when ``n`` is None or >= len)."""
    if n is None or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, np.linspace(0, len(ds) - 1, max(1, n)).round().astype(int).tolist())


def _train_in_process(params: Params, dataset: str, root: Path, val_windows: int | None) -> tuple[dict, dict]:
    """``train_plain`` with a validation subset (cheap sweep profile: validation only picks the best epoch; test stays
    complete): the same LoopTrainer, seeding and sampler."""
    from torch.utils.data import DataLoader, DistributedSampler

    cfg = params.train
    seed_everything(cfg.seed)
    comp = build_components(params, dataset, root)
    train, val = comp.datasets["train"], _subset(comp.datasets["val"], val_windows)
    tl = DataLoader(
        train,
        batch_size=cfg.batch_size,
        sampler=DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed),
    )
    vl = DataLoader(val, batch_size=params.eval.batch_size, shuffle=False)
    trainer = LoopTrainer(
        comp.model,
        tl,
        vl,
        cfg,
        loss_fn=loss_fn_for(params, comp.scaler),
        inverse=comp.inverse,
        bf16=comp.bf16,
        meta=comp.meta,
    )
    t = time.perf_counter()
    trainer.fit()
    return trainer.state_dict(), {"ray": False, "train_seconds": time.perf_counter() - t}


def _train_state(
    params: Params, dataset: str, root: Path, name: str, val_windows: int | None = None
) -> tuple[dict, dict]:
    if params.train.use_ray:
        import tempfile

        from stvfm.training import ray_train

        with tempfile.TemporaryDirectory(prefix="stvfm-fit-") as d:  # Ray exports best/last here; we keep the state
            out = ray_train.fit(params, dataset, root, d, name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
        return out["state"], {"ray": True, "ray_init_s": out["ray_init_s"], "fit_s": out["fit_s"]}
    if val_windows is not None:
        return _train_in_process(params, dataset, root, val_windows)
    out = train_plain(params, dataset, root)
    return out.state, {"ray": False, "train_seconds": out.train_seconds, "samples": out.samples}


@torch.no_grad()
def score_state(params: Params, dataset: str, root: Path, best: dict, split: str = "test") -> dict[str, Any]:
    """MAE/RMSE (original scale, ×1e3 when the dataset reports so) of a best-state dict on ``split``."""
    from torch.utils.data import DataLoader

    comp = build_components(params, dataset, root, splits=(split,))
    model = comp.model
    model.load_state_dict(best["model_state"])
    model.eval()
    acc = ErrorAccumulator(int(comp.meta["horizon"]))
    for batch in DataLoader(comp.datasets[split], batch_size=params.eval.batch_size, shuffle=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=comp.bf16):
            out = model(batch["x"], batch["x_flow"], time_ids=batch.get("time_ids"))
        acc.update(comp.inverse(batch["y"].float()), comp.inverse(out.st.float()))
    scale = 1e3 if comp.meta.get("scale_1e3") else 1.0
    return {
        "mae": acc.mae * scale,
        "rmse": acc.rmse * scale,
        "per_step": [{"step": r["step"], "mae": r["mae"] * scale, "rmse": r["rmse"] * scale} for r in acc.per_step()],
        "n_windows": len(comp.datasets[split]),
        "scale": scale,
        "backbone": comp.meta.get("backbone", {}),
    }


def train_and_test(
    params: Params,
    dataset: str,
    root: str | Path,
    *,
    name: str = "run",
    out_dir: str | Path | None = None,
    val_windows: int | None = None,
) -> dict[str, Any]:
    """Train ``params`` on ``dataset`` (best epoch on validation — all windows, or ``val_windows`` evenly spaced ones)
    and score it on **all** test windows. Returns metrics + history."""
    root = Path(root)
    t = time.perf_counter()
    state, how = _train_state(params, dataset, root, name, val_windows)
    train_s = time.perf_counter() - t
    best = best_from_state(state)
    res = score_state(params, dataset, root, best)
    res.update(
        history=state["loop"]["history"],
        best_epoch=best.get("epoch"),
        val=best.get("val", {}),
        train_wall_seconds=train_s,
        total_seconds=time.perf_counter() - t,
        val_windows=val_windows,
        **how,
    )
    if out_dir is not None:
        save_checkpoint(Path(out_dir) / "best.pt", best)
    return res
