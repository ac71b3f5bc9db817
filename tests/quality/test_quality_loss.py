"""fit_and_score (ablation, quality test, bench_quality) trains with the run's own loss: ``train.loss`` and
``train.loss_scale`` (regression: it once ignored ``loss_scale: original`` and trained on the scaled error)."""

from __future__ import annotations

import types

import pytest
import torch

from stvfm.config import load_params
from stvfm.models.output import ModelOutput
from stvfm.studies import quality


class _Stop(Exception):
    pass


@pytest.mark.parametrize("scale", ["scaled", "original"])
def test_fit_and_score_uses_the_loss_scale(monkeypatch, project_root, scale):
    class Scaler:  # original = 10 x scaled
        def inverse(self, t, channel_axis=-3):
            return t * 10.0

        def inverse_diff(self, t, channel_axis=-3):
            return t * 10.0

    comp = types.SimpleNamespace(
        datasets={"train": [0], "val": [0]},
        model=torch.nn.Linear(1, 1),
        inverse=None,
        bf16=False,
        meta={},
        scaler=Scaler(),
    )
    monkeypatch.setattr(quality, "build_components", lambda *a, **k: comp)
    seen = {}

    def trainer(model, train, val, cfg, loss_fn, **kw):
        y = torch.zeros(1, 1, 1, 1, 1)
        seen["loss"] = float(loss_fn(ModelOutput(y + 1.0, None), y, None)[0])
        raise _Stop

    monkeypatch.setattr(quality, "LoopTrainer", trainer)
    p = load_params(project_root / "params.yaml", ["train.loss=mae", f"train.loss_scale={scale}"])
    with pytest.raises(_Stop):
        quality.fit_and_score(p, "synthetic", project_root)
    assert seen["loss"] == pytest.approx(10.0 if scale == "original" else 1.0)


def test_fit_and_score_reports_the_1_based_best_epoch(monkeypatch, project_root):
    """best_epoch is the loop's own 1-based epoch number (regression: it once added 1 to it)."""
    from stvfm.training.loop import LoopState

    comp = types.SimpleNamespace(
        datasets={"train": [0], "val": [0]}, model=torch.nn.Linear(1, 1), inverse=None, bf16=False, meta={}, scaler=None
    )
    monkeypatch.setattr(quality, "build_components", lambda *a, **k: comp)

    class Trainer:
        def __init__(self, model, *a, **k):
            self.model, self.best_model_state = model, None

        def fit(self, on_epoch=None):
            return LoopState(next_epoch=5, best_epoch=3, history=[{"epoch_seconds": 1.0}] * 5)

        def validate(self, loader=None):
            return 0.0, types.SimpleNamespace(mae=1.0, rmse=2.0)

    monkeypatch.setattr(quality, "LoopTrainer", Trainer)
    out = quality.fit_and_score(load_params(project_root / "params.yaml"), "synthetic", project_root)
    assert (out["best_epoch"], out["epochs_run"], out["val"]) == (3, 5, {"mae": 1.0, "rmse": 2.0})
