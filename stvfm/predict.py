"""Forecast the next ``horizon`` steps from a registered model: original scale in, original scale out.

The registered MLflow model is a :class:`Forecaster`: the trained network plus the train-fitted scaler, taking the
last ``history`` (or ``history + 1``) steps on the original scale, (B, L, C, H, W). With ``history + 1`` steps the
first input flow is the true difference; with exactly ``history`` it is 0 (like the first step of a series).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stvfm.errors import DataError
from stvfm.io import atomic_path


class Forecaster(nn.Module):
    def __init__(self, model: nn.Module, scaler, *, history: int, horizon: int, grid: tuple[int, int], channels: int,
                 dataset: str = ""):
        """``scaler``: the train-fitted :class:`stvfm.data.scaler.Scaler` (z = (x - shift) / scale - offset; shift and
        scale per channel or per cell, broadcast to (1, 1, C, 1|H, 1|W) by the scaler)."""
        super().__init__()
        self.model = model
        shift, scale = scaler.broadcastable(5, channel_axis=-3)
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.offset = float(scaler.offset)
        self.history, self.horizon, self.grid = history, horizon, tuple(grid)
        self.channels, self.dataset = channels, dataset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        s = (x - self.shift) / self.scale - self.offset
        if s.shape[1] > self.history:
            s = s[:, -(self.history + 1):]
            flow = s[:, 1:] - s[:, :-1]
            s = s[:, 1:]
        else:
            flow = torch.cat([torch.zeros_like(s[:, :1]), s[:, 1:] - s[:, :-1]], 1)
        out = self.model(s, flow).st
        return (out.float() + self.offset) * self.scale + self.shift


def read_series(path: str | Path) -> np.ndarray:
    """(T, H, W, C) float array from an .npz (key ``flow``) or a .zarr store (var ``flow``: time, y, x, channel)."""
    path = Path(path)
    if not path.exists():
        raise DataError("input file does not exist", path=str(path))
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "flow" not in z.files:
                    raise DataError(f"no array 'flow' (T, H, W, C) in the .npz; it has {', '.join(z.files) or 'none'}",
                                    path=str(path))
                arr = np.asarray(z["flow"])
        except (ValueError, OSError) as e:
            raise DataError(f"cannot read .npz: {e}", path=str(path)) from e
    elif path.suffix == ".zarr" or path.is_dir():
        import xarray as xr
        try:
            ds = xr.open_zarr(path, consolidated=False)
        except Exception as e:  # zarr raises many kinds
            raise DataError(f"cannot open as a zarr store: {e}", path=str(path)) from e
        if "flow" not in ds:
            raise DataError(f"no variable 'flow' in the zarr store; it has {', '.join(ds.data_vars) or 'none'}",
                            path=str(path))
        arr = ds["flow"].transpose("time", "y", "x", "channel").values
    else:
        raise DataError("unsupported input; give an .npz with 'flow' (T, H, W, C) or a .zarr store", path=str(path))
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"'flow' must be (T, H, W, C), got shape {arr.shape}", path=str(path))
    return arr.astype(np.float32)


def check_series(arr: np.ndarray, f: Forecaster, path: str) -> None:
    t, h, w, c = arr.shape
    if t < f.history:
        raise DataError(f"needs at least {f.history} time steps to forecast, got {t}", path=path)
    if (h, w) != tuple(f.grid):
        raise DataError(f"grid {h}x{w} does not match the model's {f.grid[0]}x{f.grid[1]} "
                        f"(trained on '{f.dataset}')", path=path)
    if c != f.channels:
        raise DataError(f"{c} channel(s) given, the model expects {f.channels} (trained on '{f.dataset}')", path=path)
    tail = arr[-(f.history + 1):]
    if not np.isfinite(tail).all():
        bad = int((~np.isfinite(tail)).sum())
        raise DataError(f"{bad} NaN/inf value(s) in the last {len(tail)} steps; fill or drop them first", path=path)


def forecast(f: Forecaster, arr: np.ndarray) -> np.ndarray:
    """(T, H, W, C) -> next ``horizon`` steps (horizon, H, W, C) on the original scale."""
    x = torch.from_numpy(arr[-(f.history + 1):]).permute(0, 3, 1, 2).unsqueeze(0)
    f.eval()
    with torch.no_grad():
        y = f(x)[0]
    return y.permute(0, 2, 3, 1).numpy()


def load_forecaster(uri: str) -> Forecaster:
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    try:
        m = mlflow.pytorch.load_model(uri, map_location="cpu")
    except (MlflowException, OSError) as e:
        raise DataError(f"cannot load model '{uri}': {str(e).splitlines()[0][:300]} "
                        f"(train it first, or check MLFLOW_TRACKING_URI / the alias)") from e
    if not isinstance(m, Forecaster):
        raise DataError(f"model '{uri}' is a {type(m).__name__}, not an ST-VFM Forecaster")
    return m


def predict_file(uri: str, inp: str | Path, out: str | Path) -> dict[str, Any]:
    f = load_forecaster(uri)
    arr = read_series(inp)
    check_series(arr, f, str(inp))
    y = forecast(f, arr)
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, forecast=y.astype(np.float32), history_steps=np.int64(arr.shape[0]))
    return {"out": str(out), "shape": list(y.shape), "model": uri, "dataset": f.dataset}
