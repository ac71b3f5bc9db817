"""The ``tune:`` section of params.yaml as typed settings (profiles merged in), validated with messages that name
the key.

A profile (``tune.profiles.<name>``) overrides any key of the section; its ``set:`` mapping holds dotted params
overrides applied to every trial (e.g. ``model.vfm_blocks: null`` for the paper's full-depth backbones).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stvfm.config import from_dict
from stvfm.errors import ConfigError


@dataclass
class TrialResources:
    trial_cpu: float = 1.0  # the Tune trial driver (builds and runs the TorchTrainer)
    num_workers: int = 2  # Ray Train workers per trial (-> train.num_workers)
    cpus_per_worker: float = 0.5  # -> train.cpus_per_worker
    use_gpu: bool = False  # -> train.use_gpu
    gpus_per_worker: float = 0.0  # -> train.gpus_per_worker

    @property
    def cpus_per_trial(self) -> float:
        return self.trial_cpu + self.num_workers * self.cpus_per_worker

    @property
    def gpus_per_trial(self) -> float:
        return self.num_workers * self.gpus_per_worker if self.use_gpu else 0.0


@dataclass
class TuneSettings:
    profile: str | None = None
    datasets: list[str] = field(default_factory=list)  # the DVC stage tune/dvc.yaml runs for these (opt-in; [] = none)
    metric: str = "val_rmse"
    mode: str = "min"
    num_samples: int = 4
    max_concurrent_trials: int | None = 2
    epochs: int = 2
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_failures: int = 2
    seed: int = 0
    local_num_cpus: int | None = 4
    max_batches_per_epoch: int | None = None
    resources: TrialResources = field(default_factory=TrialResources)
    space: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)  # dotted params overrides for every trial (from a profile)


METRICS = ("val_rmse", "val_mae", "val_loss", "train_loss")


def tune_settings(section: Mapping[str, Any], profile: str | None = None) -> TuneSettings:
    """Typed settings from ``params.tune`` (``profile`` overrides ``tune.profile``)."""
    raw = copy.deepcopy(dict(section or {}))
    if "set" in raw:
        raise ConfigError("params.yaml tune.set: only allowed inside a profile (tune.profiles.<name>.set)")
    name = profile if profile is not None else raw.get("profile")
    if name:
        profiles = raw.get("profiles") or {}
        if name not in profiles:
            raise ConfigError(
                f"tune profile '{name}' is not defined; params.yaml tune.profiles has: "
                f"{', '.join(profiles) or '(none)'}"
            )
        over = dict(profiles[name] or {})
        if "profiles" in over or "profile" in over:
            raise ConfigError(f"params.yaml tune.profiles.{name}: a profile cannot contain 'profile' or 'profiles'")
        for k, v in over.items():
            if k == "resources" and isinstance(v, Mapping):
                raw["resources"] = {**(raw.get("resources") or {}), **v}
            else:
                raw[k] = v  # space replaces the whole space: a profile states its full search space
        raw["profile"] = name
    where = f"params.tune (profile {name})" if name else "params.tune"
    s: TuneSettings = from_dict(TuneSettings, raw, where)
    _validate(s, where)
    return s


def _validate(s: TuneSettings, where: str) -> None:
    if s.mode not in ("min", "max"):
        raise ConfigError(f"{where}.mode: expected 'min' or 'max', got {s.mode!r}")
    if s.metric not in METRICS:
        raise ConfigError(
            f"{where}.metric: {s.metric!r} is not reported by the trainer; use one of {', '.join(METRICS)}"
        )
    for key in ("num_samples", "epochs", "grace_period"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(s, key)}")
    if s.grace_period > s.epochs:
        raise ConfigError(f"{where}.grace_period ({s.grace_period}) must be <= tune.epochs ({s.epochs})")
    if s.reduction_factor <= 1:
        raise ConfigError(f"{where}.reduction_factor: must be > 1, got {s.reduction_factor}")
    if s.max_concurrent_trials is not None and s.max_concurrent_trials < 1:
        raise ConfigError(f"{where}.max_concurrent_trials: must be >= 1 or null, got {s.max_concurrent_trials}")
    if s.max_failures < 0:
        raise ConfigError(f"{where}.max_failures: must be >= 0, got {s.max_failures}")
    r = s.resources
    if r.trial_cpu <= 0:
        raise ConfigError(f"{where}.resources.trial_cpu: must be > 0 (0 makes Ray refuse the trial), got {r.trial_cpu}")
    if r.num_workers < 1 or r.cpus_per_worker < 0:
        raise ConfigError(f"{where}.resources: num_workers must be >= 1 and cpus_per_worker >= 0")
    if r.use_gpu and r.gpus_per_worker <= 0:
        raise ConfigError(f"{where}.resources.gpus_per_worker: must be > 0 when use_gpu is true")
    if not s.space:
        raise ConfigError(
            f"{where}.space: empty; add at least one dotted key, e.g. model.lambda_flow: {{loguniform: [0.01, 10]}}"
        )
