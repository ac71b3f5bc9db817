"""Checkpoint files: ``torch.save`` through an atomic write, ``torch.load(weights_only=True)`` with clear errors.

A checkpoint is a plain dict of tensors and Python primitives (no pickled classes), so it loads with
``weights_only=True``. ``best.pt`` holds the model of the best validation epoch plus what is needed to rebuild it
(``model_cfg``, ``arch``, ``dataset``, ``grid``, ``channels``, ``epoch``, ``val``, ``backbone``); ``last.pt`` adds
the full training state (optimizer, scheduler, RNG, early-stopping counters) for resuming.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from stvfm.errors import CheckpointError
from stvfm.io import atomic_path

META_KEYS = (
    "model_cfg",
    "arch",
    "dataset",
    "grid",
    "channels",
    "history",
    "horizon",
    "backbone",
    "interval_minutes",
    "scaler_kind",
)


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_checkpoint(path: str | Path, *, require: tuple[str, ...] = ("model_state",)) -> dict[str, Any]:
    """Load with ``weights_only=True``; a missing, truncated or corrupt file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist (run the train stage first: `dvc repro train` or `stvfm train`)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or truncated ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); delete it and train again"
        ) from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(obj).__name__}, expected a dict")
    missing = [k for k in require if k not in obj]
    if missing:
        raise CheckpointError(
            f"checkpoint '{path}' lacks key(s) {', '.join(missing)}; it was not written by stvfm train"
        )
    return obj


def best_from_state(state: dict[str, Any]) -> dict[str, Any]:
    """The ``best.pt`` dict from a full training state (``last.pt``/Ray ``state.pt``)."""
    best = dict(state["model_state"])  # frozen weights (never trained) + the best epoch's trainable ones
    best.update(state.get("best_model_state") or {})
    out = {k: state[k] for k in META_KEYS if k in state}
    out.update(model_state=best, epoch=state["loop"]["best_epoch"], val=state["loop"].get("best_metrics", {}))
    return out
