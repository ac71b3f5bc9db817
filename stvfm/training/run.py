"""One training process end to end (no Ray): build components, run the loop, export ``models/<ds>/``.

:func:`worker_body` is shared with the Ray wrapper, which passes DDP/distributed hooks and a report callback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from stvfm.config import Params
from stvfm.io import write_json
from stvfm.training.checkpoint import best_from_state, load_checkpoint, save_checkpoint
from stvfm.training.components import build_components
from stvfm.training.loop import EpochResult, LoopTrainer, loss_fn_for
from stvfm.training.seed import seed_everything

PID_DIR_ENV = "STVFM_TRAIN_PID_DIR"  # debugging/fault tests: each worker writes <rank>.pid = "<pid> <epoch>"


@dataclass
class TrainOutcome:
    state: dict[str, Any]  # full training state (what last.pt holds)
    resumed_from: int | None = None  # epoch index training restarted at (None: from scratch)
    seconds: float = 0.0
    samples: int = 0
    train_seconds: float = 0.0  # time inside epochs (excludes start-up)
    extra: dict[str, Any] = field(default_factory=dict)


def _write_pid(rank: int, epoch: int) -> None:
    d = os.environ.get(PID_DIR_ENV)
    if d:
        p = Path(d) / f"{rank}.pid"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()} {epoch}\n")
        os.replace(tmp, p)


def worker_body(
    params: Params,
    dataset: str,
    root: str | Path,
    *,
    rank: int = 0,
    world: int = 1,
    prepare_model: Callable | None = None,
    prepare_loader: Callable | None = None,
    all_reduce: Callable | None = None,
    resume_state: dict | None = None,
    on_epoch: Callable[[EpochResult, LoopTrainer], None] | None = None,
    device: str = "cpu",
) -> TrainOutcome:
    t0 = time.perf_counter()
    cfg = params.train
    seed_everything(cfg.seed)
    comp = build_components(params, dataset, root, device=device)
    model = comp.model.to(device)
    if prepare_model is not None:
        model = prepare_model(model)
    bs = max(1, cfg.batch_size // world)
    g = torch.Generator().manual_seed(cfg.seed)
    if prepare_loader is None:  # in-process: same per-epoch shuffling scheme as the distributed sampler
        train_loader = DataLoader(
            comp.datasets["train"],
            batch_size=bs,
            sampler=DistributedSampler(comp.datasets["train"], num_replicas=1, rank=0, shuffle=True, seed=cfg.seed),
        )
        val_loader = DataLoader(comp.datasets["val"], batch_size=params.eval.batch_size, shuffle=False)
    else:
        train_loader = prepare_loader(DataLoader(comp.datasets["train"], batch_size=bs, shuffle=True, generator=g))
        # validation: every rank takes windows rank, rank + world, ... (no padding duplicates, unlike a
        # DistributedSampler), so the all-reduced MAE/RMSE are exactly those of the whole split
        val = comp.datasets["val"]
        val_loader = DataLoader(
            Subset(val, range(rank, len(val), world)), batch_size=params.eval.batch_size, shuffle=False
        )
    trainer = LoopTrainer(
        model,
        train_loader,
        val_loader,
        cfg,
        loss_fn=loss_fn_for(params, comp.scaler),
        inverse=comp.inverse,
        device=device,
        bf16=comp.bf16,
        all_reduce=all_reduce,
        meta=comp.meta,
    )
    resumed_from = None
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        resumed_from = trainer.state.next_epoch
    counters = {"samples": 0, "seconds": 0.0}

    def hook(res: EpochResult, tr: LoopTrainer) -> None:
        counters["samples"] += res.samples
        counters["seconds"] += res.seconds
        if rank == 0:
            print(
                f"[{dataset}] epoch {res.number}/{cfg.epochs}: train_loss {res.train_loss:.4f}  val_loss "
                f"{res.val_loss:.4f}  val_mae {res.val_mae:.4f}  val_rmse {res.val_rmse:.4f}  lr {res.lr:.2e}  "
                f"({res.seconds:.1f} s{', best' if res.is_best else ''}{', early stop' if res.stop else ''})",
                flush=True,
            )
        if on_epoch is not None:
            on_epoch(res, tr)

    _write_pid(rank, trainer.state.next_epoch)
    orig_train_epoch = trainer.train_epoch

    def train_epoch(epoch: int):
        _write_pid(rank, epoch)
        return orig_train_epoch(epoch)

    trainer.train_epoch = train_epoch  # type: ignore[method-assign]
    trainer.fit(hook)
    return TrainOutcome(
        trainer.state_dict(), resumed_from, time.perf_counter() - t0, counters["samples"], counters["seconds"]
    )


def export_state(state: dict[str, Any], model_dir: str | Path) -> dict[str, Any]:
    """Write ``best.pt`` (best-validation model + metadata), ``last.pt`` (full state) and ``history.json``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    best = best_from_state(state)
    save_checkpoint(model_dir / "best.pt", best)
    save_checkpoint(model_dir / "last.pt", state)
    write_json(model_dir / "history.json", state["loop"]["history"])
    return best


def train_plain(
    params: Params,
    dataset: str,
    root: str | Path,
    *,
    resume: str | Path | None = None,
    model_dir: str | Path | None = None,
    on_epoch: Callable | None = None,
) -> TrainOutcome:
    """Train in this process (``train.use_ray: false``); with ``model_dir`` also save ``last.pt`` every epoch."""
    resume_state = load_checkpoint(resume, require=("model_state", "optimizer", "loop")) if resume else None

    def hook(res: EpochResult, tr: LoopTrainer) -> None:
        if model_dir is not None:
            save_checkpoint(Path(model_dir) / "last.pt", tr.state_dict())
        if on_epoch is not None:
            on_epoch(res, tr)

    return worker_body(params, dataset, root, resume_state=resume_state, on_epoch=hook)


__all__ = ["PID_DIR_ENV", "TrainOutcome", "export_state", "train_plain", "worker_body"]
