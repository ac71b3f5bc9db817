"""Fixture metrics for the report tests: the files the stages would write for one dataset."""

from __future__ import annotations

from stvfm.io import write_json


def write_fixture(root, name="synthetic", start="2024-01-01T00:00:00", T=240, interval=60, **meta):
    m = root / "metrics" / name
    write_json(
        root / "data" / "split" / name / "meta.json",
        {
            "T": T,
            "start": start,
            "interval_minutes": interval,
            "grid": [16, 8],
            "channels": 2,
            "n_windows": {"train": 150, "val": 25, "test": 25},
            "scale_1e3": False,
            "history": 6,
            "horizon": 6,
            "split": [0.7, 0.15, 0.15],
            **meta,
        },
    )
    write_json(
        m / "baselines.json",
        {
            "persistence": {"mae": 4.0, "rmse": 8.0},
            "ha": {"mae": 3.0, "rmse": 12.0},
            "arima": {"mae": 3.86, "rmse": 12.37},
            "stid": {"mae": 2.0, "rmse": 4.0},
        },
    )
    per_step = [{"step": i + 1, "mae": 1.0 + 0.1 * i, "rmse": 2.0 + 0.1 * i} for i in range(6)]
    write_json(
        m / "baselines_detail.json",
        {"baselines": {"ha": {"mae": 3.0, "rmse": 12.0, "per_step": per_step, "settings": {"period": "day"}}}},
    )
    write_json(
        m / "test.json",
        {
            "mae": 1.8,
            "rmse": 3.38,
            "per_step": per_step,
            "pretrained_backbone": False,
            "backbone": "vit_tiny",
            "variant": "full",
            "n_windows": 25,
            "best_epoch": 3,
        },
    )
    write_json(
        m / "sweeps" / "variant-simple.json",
        {"mae": 2.65, "rmse": 8.49, "model": {"backbone": "vit_tiny"}, "pretrained_backbone": False},
    )
    write_json(
        m / "sweeps" / "backbone-clip_vitb16.json",
        {"mae": 1.5, "rmse": 4.0, "pretrained_backbone": False, "model": {"vfm_blocks": 1}},
    )
    write_json(
        root / "models" / name / "history.json",
        [
            {"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_mae": 2.0 - 0.1 * e}
            for e in range(3)
        ],
    )
