"""Split outputs as numpy arrays on the original scale, and the shared error accumulator.

The statistical baselines (persistence, HA, ARIMA) need no scaling and no torch: they read the gridded series
``data/grid/<ds>.zarr`` (var ``flow`` (time, y, x, channel)) and the split's ``meta.json`` / ``windows.parquet`` —
the same windows the models are evaluated on — and are scored with the same MAE/RMSE (appendix Eqs. 4-5, ×1e3 when
``meta.scale_1e3``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stvfm.errors import DataError
from stvfm.io import read_json
from stvfm.paths import DatasetPaths


@dataclass
class SeriesSplit:
    """One dataset's series and windows. ``series`` is (T, H, W, C) float64 on the original scale."""

    name: str
    series: np.ndarray
    times: np.ndarray  # datetime64[ns], (T,)
    interval_minutes: int
    bounds: dict[str, tuple[int, int]]
    windows: dict[str, np.ndarray]  # split -> t0 (int64)
    history: int = 6
    horizon: int = 6
    scale_1e3: bool = False

    @property
    def train_range(self) -> tuple[int, int]:
        return self.bounds["train"]

    @property
    def scale(self) -> float:
        return 1e3 if self.scale_1e3 else 1.0


def load_series_split(paths: DatasetPaths) -> SeriesSplit:
    """Read the grid store and the split outputs of ``paths.name`` (stages grid and split must have run)."""
    import pandas as pd
    import xarray as xr

    for p, stage in ((paths.split_meta, "split"), (paths.windows, "split"), (paths.grid_zarr, "grid")):
        if not p.exists():
            raise DataError(
                f"missing {p.name}; run `dvc repro {stage}@{paths.name}` (or `stvfm data {stage} {paths.name}`) first",
                dataset=paths.name,
                path=str(p),
            )
    meta = read_json(paths.split_meta)
    ds = xr.open_zarr(paths.grid_zarr, consolidated=False)
    if "flow" not in ds:
        raise DataError("grid store has no variable 'flow'", dataset=paths.name, path=str(paths.grid_zarr))
    series = np.asarray(ds["flow"].transpose("time", "y", "x", "channel").values, dtype=np.float64)
    times = np.asarray(ds["time"].values).astype("datetime64[ns]")
    interval = int(meta.get("interval_minutes") or ds.attrs.get("interval_minutes"))
    win = pd.read_parquet(paths.windows, columns=["split", "t0"])
    windows = {s: np.sort(win.loc[win["split"] == s, "t0"].to_numpy(np.int64)) for s in ("train", "val", "test")}
    bounds = {k: (int(v[0]), int(v[1])) for k, v in meta["bounds"].items()}
    return SeriesSplit(
        paths.name,
        series,
        times,
        interval,
        bounds,
        windows,
        int(meta.get("history", 6)),
        int(meta.get("horizon", 6)),
        bool(meta.get("scale_1e3", False)),
    )


class ErrorAccumulator:
    """Streaming MAE/RMSE (appendix Eqs. 4-5) over all points, overall and per horizon step.

    ``add(pred, true)`` takes arrays (N, horizon, ...) on the original scale.
    """

    def __init__(self, horizon: int, scale: float = 1.0):
        self.abs = np.zeros(horizon)
        self.sq = np.zeros(horizon)
        self.n = np.zeros(horizon)
        self.scale = scale
        self.c_abs = self.c_sq = None
        self.c_n = 0.0

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        if pred.shape != true.shape:
            raise ValueError(f"prediction shape {pred.shape} != target shape {true.shape}")
        err = (pred.astype(np.float64) - true.astype(np.float64)) * self.scale
        axes = tuple(i for i in range(err.ndim) if i != 1)
        self.abs += np.abs(err).sum(axis=axes)
        self.sq += (err**2).sum(axis=axes)
        self.n += err.size / err.shape[1]
        # per channel (last axis: series are (T, H, W, C)) for the report's inflow/outflow figures
        caxes = tuple(range(err.ndim - 1))
        ca, cs = np.abs(err).sum(axis=caxes), (err**2).sum(axis=caxes)
        if getattr(self, "c_abs", None) is None:
            self.c_abs, self.c_sq, self.c_n = np.zeros_like(ca), np.zeros_like(cs), 0.0
        self.c_abs += ca
        self.c_sq += cs
        self.c_n += err.size / err.shape[-1]

    def result(self) -> dict:
        if self.n.sum() == 0:
            raise ValueError("no windows were scored")
        return {
            "mae": float(self.abs.sum() / self.n.sum()),
            "rmse": float(np.sqrt(self.sq.sum() / self.n.sum())),
            "per_step": [
                {"step": i + 1, "mae": float(a / n), "rmse": float(np.sqrt(s / n))}
                for i, (a, s, n) in enumerate(zip(self.abs, self.sq, self.n, strict=True))
            ],
            "per_channel": [
                {"channel": c, "mae": float(a / self.c_n), "rmse": float(np.sqrt(s / self.c_n))}
                for c, (a, s) in enumerate(zip(self.c_abs, self.c_sq, strict=True))
            ],
        }


# A forecaster maps (series (T,H,W,C), t0 array (N,)) -> predictions (N, horizon, H, W, C) for those windows.
Forecaster = Callable[[np.ndarray, np.ndarray], np.ndarray]


def targets(series: np.ndarray, t0: np.ndarray, history: int, horizon: int) -> np.ndarray:
    idx = t0[:, None] + history + np.arange(horizon)[None, :]
    return series[idx]


def score(data: SeriesSplit, forecast: Forecaster, split: str = "test", chunk: int = 256) -> dict:
    """MAE/RMSE of ``forecast`` over the windows of ``split`` (the same windows the models are evaluated on)."""
    t0 = data.windows[split]
    if len(t0) == 0:
        raise DataError(f"split '{split}' has no windows", dataset=data.name)
    acc = ErrorAccumulator(data.horizon, data.scale)
    for i in range(0, len(t0), chunk):
        part = t0[i : i + chunk]
        acc.add(forecast(data.series, part), targets(data.series, part, data.history, data.horizon))
    out = acc.result()
    out["n_windows"] = len(t0)
    out["scale"] = data.scale
    return out
