"""Variant and backbone sweeps (Table 3 and appendix Table 3 of the paper) as DVC matrix stages.

``run_sweep(dataset, kind, value, params, root)`` trains one configuration with the sweep profile of ``params.sweeps``
(``kind`` = ``variant`` sets ``model.variant``; ``backbone`` sets ``model.backbone``), scores it on the test windows and
writes ``metrics/<ds>/sweeps/<kind>-<value>.json``; one MLflow run per result.

Profiles (``sweeps:`` in params.yaml): ``profile`` overrides apply to every sweep run, ``backbone_profile`` on top of
them for the backbone runs. The default is a cheap CPU profile (in-process loop, 1 epoch, capped batches, a few VFM
blocks, random-init backbones allowed); ``docs/report.md`` gives the paper profile.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvfm.config import VARIANTS, Params, flatten
from stvfm.errors import ConfigError
from stvfm.io import write_json
from stvfm.paths import dataset_paths

log = logging.getLogger(__name__)

BACKBONES = ("dinov2_vits14", "clip_vitb16", "deit_vitb16", "vit_tiny")
DEFAULT_PROFILE = {"train.use_ray": False, "train.epochs": 1, "train.max_batches_per_epoch": 8, "train.batch_size": 16,
                   "model.vfm_blocks": 2, "model.allow_random_init": True}
DEFAULT_BACKBONE_PROFILE = {"train.max_batches_per_epoch": 2, "model.vfm_blocks": 1}


@dataclass
class SweepConfig:
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    backbones: list[str] = field(default_factory=lambda: ["dinov2_vits14"])
    profile: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PROFILE))
    backbone_profile: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BACKBONE_PROFILE))
    val_windows: int | None = 32  # validation subset per sweep run (picks the best epoch only; test is complete)
    torch_threads: int | None = 1  # measured: 1 thread is 2-5x faster than 2 contended ones on a busy 2-core box

    @classmethod
    def from_params(cls, section: dict | None) -> "SweepConfig":
        s = dict(section or {})
        allowed = {"datasets", "variants", "backbones", "profile", "backbone_profile", "torch_threads", "val_windows"}
        if set(s) - allowed:
            raise ConfigError(f"params.yaml sweeps: unknown key(s) {', '.join(sorted(set(s) - allowed))}; "
                              f"allowed: {', '.join(sorted(allowed))}")
        cfg = cls()
        if "datasets" in s:
            cfg.datasets = list(s["datasets"] or [])
        if "variants" in s:
            cfg.variants = list(s["variants"] or [])
        if "backbones" in s:
            cfg.backbones = list(s["backbones"] or [])
        bad = [v for v in cfg.variants if v not in VARIANTS]
        if bad:
            raise ConfigError(f"params.yaml sweeps.variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
        bad = [b for b in cfg.backbones if b not in BACKBONES]
        if bad:
            raise ConfigError(f"params.yaml sweeps.backbones: unknown {', '.join(bad)}; choose from {', '.join(BACKBONES)}")
        for key in ("torch_threads", "val_windows"):
            if key in s:
                v = s[key]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    raise ConfigError(f"params.yaml sweeps.{key}: expected a positive integer or null, got {v!r}")
                setattr(cfg, key, v)
        for key in ("profile", "backbone_profile"):
            if key in s:
                val = s[key] or {}
                if not isinstance(val, dict):
                    raise ConfigError(f"params.yaml sweeps.{key}: expected a mapping of dotted params, got {val!r}")
                setattr(cfg, key, flatten(val))  # nested {train: {epochs: 1}} or dotted {train.epochs: 1}
        return cfg

    def overrides(self, kind: str, value: str) -> dict[str, Any]:
        if kind == "variant":
            if value not in VARIANTS:
                raise ConfigError(f"sweep variant '{value}' is not one of {', '.join(VARIANTS)}")
            return {**self.profile, "model.variant": value}
        if kind == "backbone":
            if value not in BACKBONES:
                raise ConfigError(f"sweep backbone '{value}' is not one of {', '.join(BACKBONES)}")
            return {**self.profile, **self.backbone_profile, "model.backbone": value}
        raise ConfigError(f"sweep kind '{kind}' is not one of variant, backbone")


def sweep_path(root: str | Path, dataset: str, kind: str, value: str, data_root: str = "data") -> Path:
    return dataset_paths(dataset, root, data_root).metrics_dir / "sweeps" / f"{kind}-{value}.json"


def run_sweep(dataset: str, kind: str, value: str, params: Params, root: str | Path = ".",
              log_mlflow: bool = True) -> dict[str, Any]:
    from stvfm.baselines.fit import train_and_test, with_overrides

    root = Path(root)
    cfg = SweepConfig.from_params(params.sweeps)
    overrides = cfg.overrides(kind, value)
    sp = with_overrides(params, overrides)
    t, started_at = time.perf_counter(), time.time()
    import torch

    threads = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    try:
        res = train_and_test(sp, dataset, root, name=f"{dataset}-{kind}-{value}", val_windows=cfg.val_windows)
    finally:
        torch.set_num_threads(threads)
    res.update(dataset=dataset, kind=kind, value=value, overrides=overrides, seconds=time.perf_counter() - t,
               pretrained_backbone=bool(res.get("backbone", {}).get("pretrained", False)),
               model={k: getattr(sp.model, k) for k in ("variant", "backbone", "vfm_blocks", "weights")},
               train={k: getattr(sp.train, k) for k in ("epochs", "max_batches_per_epoch", "batch_size", "lr")})
    ended_at = time.time()
    res["profile"] = params.profile
    out = sweep_path(root, dataset, kind, value, params.data.root)
    write_json(out, res)
    log.info("%s %s=%s: MAE %.4f RMSE %.4f (%.1f s, pretrained=%s)", dataset, kind, value, res["mae"], res["rmse"],
             res["seconds"], res["pretrained_backbone"])
    if log_mlflow:
        from stvfm.report.tracking import log_result

        log_result(sp, dataset, root, run_name=f"sweep-{kind}-{value}", kind=f"sweep-{kind}",
                   started_at=started_at, ended_at=ended_at,
                   run_params={"sweep.kind": kind, "sweep.value": value, **{f"override.{k}": v for k, v in overrides.items()},
                               "pretrained_backbone": res["pretrained_backbone"]},
                   metrics={"test_mae": res["mae"], "test_rmse": res["rmse"], "seconds": res["seconds"]},
                   per_step=res.get("per_step"), history=res.get("history"), artifacts=[out])
    return res
