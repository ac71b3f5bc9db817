"""Assemble what one training process needs from the split stage's outputs: datasets, scaler inverse, model, loss.

Each Ray worker calls :func:`build_components` itself, so it reads only its split ranges from the Zarr/Parquet files.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stvfm.config import Params, resolve_model_config
from stvfm.datasets.registry import get_spec
from stvfm.errors import ConfigError, DataError
from stvfm.io import read_json
from stvfm.paths import DatasetPaths, dataset_paths

log = logging.getLogger(__name__)


def read_meta(paths: DatasetPaths) -> dict[str, Any]:
    if not paths.split_meta.is_file():
        raise DataError(
            "split outputs are missing; run `dvc repro split` first", dataset=paths.name, path=str(paths.split_meta)
        )
    return read_json(paths.split_meta)


def load_scaler(paths: DatasetPaths, kind: str | None = None):
    """The split stage's train-fitted scaler, or (``kind`` differs from it, e.g. a baseline's ``data.scaler``
    override) one of ``kind`` fitted on the same train range (:func:`stvfm.data.windows.scaler_for`)."""
    from stvfm.data.windows import scaler_for

    return scaler_for(paths, kind)


def make_inverse(scaler) -> Callable[[torch.Tensor], torch.Tensor]:
    """Inverse transform (scaled -> original) for (..., C, H, W) tensors."""

    def inv(t: torch.Tensor) -> torch.Tensor:
        return scaler.inverse(t, channel_axis=-3)

    return inv


def info_dict(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if hasattr(info, "to_dict"):
        d = info.to_dict()
    elif dataclasses.is_dataclass(info):
        d = dataclasses.asdict(info)
    elif isinstance(info, dict):
        d = dict(info)
    else:
        d = {k: v for k, v in vars(info).items() if not k.startswith("_")}
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in d.items()}


def is_pretrained(backbone: dict[str, Any]) -> bool:
    for key in ("pretrained", "pretrained_backbone", "loaded_weights"):
        if key in backbone:
            return bool(backbone[key])
    return bool(backbone.get("weights"))


@dataclass
class Components:
    paths: DatasetPaths
    meta: dict[str, Any]  # checkpoint metadata (model_cfg, arch, dataset, grid, channels, history, horizon, backbone)
    model: torch.nn.Module
    inverse: Callable[[torch.Tensor], torch.Tensor]
    scaler: Any  # stvfm.data.scaler.Scaler
    datasets: dict[str, Any]
    bf16: bool


def build_model_from_meta(meta: dict[str, Any]):
    from stvfm.config import ModelConfig, from_dict
    from stvfm.models.factory import build_model, needs_time_ids

    cfg = from_dict(ModelConfig, meta["model_cfg"], "checkpoint.model_cfg")
    interval = meta.get("interval_minutes")
    if interval is None and needs_time_ids(cfg):
        raise ConfigError(
            "model.time_identity / model.output=anchored|identity need the data interval "
            "(interval_minutes); this model's metadata (the checkpoint, or the split's meta.json when "
            "training) has none (re-run the split stage and retrain, or switch both off)"
        )
    return build_model(
        cfg,
        grid=tuple(meta["grid"]),
        channels=int(meta["channels"]),
        history=int(meta["history"]),
        horizon=int(meta["horizon"]),
        interval_minutes=None if interval is None else int(interval),
    )


def build_components(
    params: Params,
    dataset: str,
    root: str | Path,
    splits: tuple[str, ...] = ("train", "val"),
    *,
    with_model: bool = True,
    device: str | torch.device = "cpu",
) -> Components:
    """``device``: where the model will train; ``model.bf16: auto`` is resolved for it (stvfm.training.precision)."""
    from stvfm.data.windows import WindowDataset

    paths = dataset_paths(dataset, root, params.data.root)
    split_meta = read_meta(paths)
    spec = get_spec(dataset, params.local_sources)
    model_cfg = resolve_model_config(params, spec)
    if not isinstance(model_cfg.bf16, bool):  # "auto": measured once, the checkpoint keeps the answer
        from stvfm.training.precision import resolve_bf16

        choice = resolve_bf16(model_cfg.bf16, device)
        log.info("%s", choice.reason)
        model_cfg = dataclasses.replace(model_cfg, bf16=choice.enabled)
    meta = {
        "model_cfg": dataclasses.asdict(model_cfg),
        "arch": model_cfg.arch,
        "dataset": dataset,
        "grid": [int(v) for v in split_meta["grid"]],
        "channels": int(split_meta["channels"]),
        "history": int(split_meta.get("history", params.data.history)),
        "horizon": int(split_meta.get("horizon", params.data.horizon)),
        "scale_1e3": bool(split_meta.get("scale_1e3", spec.scale_1e3)),
        "interval_minutes": int(split_meta["interval_minutes"]) if split_meta.get("interval_minutes") else None,
        "scaler_kind": params.data.scaler,
    }
    model = None
    if with_model:
        model, info = build_model_from_meta(meta)
        meta["backbone"] = info_dict(info)
    scaler = load_scaler(paths, params.data.scaler)
    ds = {s: WindowDataset(paths, s, scaler=scaler) for s in splits}
    if model is not None and "train" in ds and hasattr(getattr(model, "output_path", None), "fit_anchor"):
        tr = ds["train"]  # the anchored output path starts from the train split's time-of-day mean (HA)
        model.output_path.fit_anchor(torch.from_numpy(tr._x), torch.from_numpy(tr._tid[:, 0]))
    for s, d in ds.items():
        if len(d) == 0:
            raise DataError(
                f"the {s} split has no windows; lengthen the series or change data.split",
                dataset=dataset,
                path=str(paths.windows),
            )
    return Components(paths, meta, model, make_inverse(scaler), scaler, ds, bool(model_cfg.bf16))
