"""The Tune function trainable: one trial = one Ray Train ``TorchTrainer`` (Train V2 style, not ``Tuner(trainer)``).

The trial applies its sampled config to the base params, builds the trainer with ``build_trainer(..., callbacks=
[TuneReportCallback()])`` and fits it; the trainer's rank-0 per-epoch report ({epoch, train_loss, val_loss, val_mae,
val_rmse} + ``checkpoint_path``) becomes the trial's Tune result, which ASHA reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stvfm.errors import ConfigError

DEFAULT_TRAINER = "stvfm.training.ray_train:build_trainer"


def load_factory(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (the trainer factory)."""
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise ConfigError(f"trainer factory '{spec}': expected 'package.module:function'")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"trainer factory '{spec}' cannot be imported: {e}") from e


def make_trainable(
    base: Mapping[str, Any],
    extra: Mapping[str, Any],
    dataset: str,
    root: Path,
    storage_path: Path,
    factory: str = DEFAULT_TRAINER,
) -> Callable[[dict], None]:
    """A picklable closure over plain data (params tree, paths), run by Tune once per trial."""
    base = dict(base)
    extra = dict(extra)
    root = Path(root).resolve()
    storage = str(Path(storage_path).resolve())

    def train_trial(config: dict) -> None:
        import logging

        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from tune.space import trial_params

        logging.getLogger("ray.train").setLevel(logging.WARNING)
        params = trial_params(base, config, extra)
        build = load_factory(factory)
        # same name on a Tune retry -> Train V2 picks up the run's last registered checkpoint
        trainer = build(
            params,
            dataset,
            root,
            name=f"train_{tune.get_context().get_trial_name()}",
            callbacks=[TuneReportCallback()],
            storage_path=storage,
        )
        trainer.fit()

    return train_trial
