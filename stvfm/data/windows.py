"""``WindowDataset``: the torch Dataset over the split stage's outputs.

``WindowDataset(paths, split)[i]`` -> ``{"x", "x_flow", "y", "y_flow", "t0"}``: ``x``/``y`` are float32 ``(T, C, H, W)``
tensors of the *scaled* series (history / horizon steps), ``x_flow = scale_diff(dflow[t0 : t0+h])`` and
``y_flow = scale_diff(dflow[t0+h : t0+h+f])``, ``t0`` is the absolute index of the first input step (int64 scalar), and
``time_ids`` the int64 (h + f, 2) [slot of day, day of week] of every input and forecast step
(:mod:`stvfm.data.timefeatures`, from the split meta's ``start`` and ``interval_minutes``).
On construction it reads only its split's time range ``bounds[split]`` from the grid and flow Zarr stores (one slice,
loaded into memory: a split is small), so it never touches another split's steps. The scaler is the split stage's
``scaler.json`` unless one is passed (``scaler_for(paths, kind)``: a run whose ``data.scaler`` differs from the split
stage's, e.g. the STID baseline's per-cell z-score, fits its own on the same train range).

Grids whose H or W is not divisible by the model's patch size are **not** padded here: the model pads (and crops its
output back) so that every stored value and every metric is on the original grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stvfm.data.scaler import Scaler
from stvfm.data.timefeatures import series_time_ids
from stvfm.errors import DataError
from stvfm.io import read_json

__all__ = ["Scaler", "WindowDataset", "load_range", "scaler_for"]


def load_range(
    store,
    var: str,
    lo: int,
    hi: int,
    *,
    expect_grid: str | None = None,
    dataset: str | None = None,
    stage: str = "split",
) -> np.ndarray:
    """Steps ``[lo, hi)`` of ``var`` from a Zarr store as (T, C, H, W) float32. With ``expect_grid`` the store must
    record that grid_sha256 (the split's meta.json) and hold at least ``hi`` steps; else the error names the stage to
    rerun."""
    import xarray as xr

    from stvfm.data.store import check_chunks, check_same_grid, read_values

    fix = f"rerun `dvc repro {stage}@{dataset}`" if dataset else "rerun `dvc repro`"
    try:
        ds = xr.open_zarr(store, consolidated=False)
    except Exception as e:
        raise DataError(f"cannot open Zarr store ({e}); {fix}", dataset=dataset, path=str(store)) from None
    if var not in ds.data_vars:
        raise DataError(f"no variable '{var}' in the store; {fix}", dataset=dataset, path=str(store))
    if expect_grid is not None:
        if stage == "flow":  # the split and the grid agree (checked first); a flow store of another grid is stale
            check_same_grid(
                expect_grid,
                ds.attrs.get("grid_sha256"),
                dataset=dataset or "<ds>",
                what="the flow store",
                path=store,
                rerun="flow",
            )
        else:
            check_same_grid(
                ds.attrs.get("grid_sha256"),
                expect_grid,
                dataset=dataset or "<ds>",
                what="the split (meta.json)",
                path=store,
                rerun="split",
            )
    if ds.sizes.get("time", 0) < hi:
        raise DataError(
            f"the store has {ds.sizes.get('time', 0)} steps but the split needs {hi}; the split is "
            f"stale: rerun `dvc repro split@{dataset}`",
            dataset=dataset,
            path=str(store),
        )
    check_chunks(store, var, dataset=dataset, fix=fix)
    a = read_values(ds[var].isel(time=slice(lo, hi)), store, dataset=dataset, fix=fix).astype(np.float32)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # (T, H, W, C) -> (T, C, H, W)


def scaler_for(paths, kind: str | None = None) -> Scaler:
    """The split stage's scaler when ``kind`` is None or its kind; else a ``kind`` scaler fitted on the train range
    ``bounds["train"]`` of the grid store (train only, exactly as the split stage fits its own)."""
    stored = Scaler.load(paths.scaler)
    if kind is None or kind == stored.kind:
        return stored
    meta = read_json(paths.split_meta)
    lo, hi = (int(v) for v in meta["bounds"]["train"])
    return Scaler.fit(load_range(paths.grid_zarr, "flow", lo, hi), kind, channel_axis=-3)


try:  # torch is a hard dependency of the project; keep the import local to this module
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[misc,assignment]


class WindowDataset(_TorchDataset):
    def __init__(self, paths, split: str, scaler: Scaler | None = None):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        for p in (paths.split_meta, paths.windows, paths.scaler, paths.grid_zarr, paths.flow_zarr):
            if not p.exists():
                raise DataError(
                    f"missing split-stage output; run `dvc repro split@{paths.name}` "
                    f"(or `stvfm data split {paths.name}`)",
                    dataset=paths.name,
                    path=str(p),
                )
        self.paths = paths
        self.split = split
        self.meta: dict[str, Any] = read_json(paths.split_meta)
        self.history = int(self.meta["history"])
        self.horizon = int(self.meta["horizon"])
        self.lo, self.hi = (int(v) for v in self.meta["bounds"][split])
        w = pd.read_parquet(paths.windows, filters=[("split", "==", split)])
        self.t0 = w["t0"].to_numpy(np.int64)
        self.time = w["time"].to_numpy() if "time" in w else None
        L = self.history + self.horizon
        if len(self.t0) and (self.t0.min() < self.lo or self.t0.max() + L > self.hi):
            raise DataError(
                f"windows.parquet has {split} windows outside the split {self.lo}..{self.hi}",
                dataset=paths.name,
                path=str(paths.windows),
            )
        self.scaler = scaler if scaler is not None else Scaler.load(paths.scaler)
        gsha = self.meta.get("grid_sha256")  # absent in splits written before it was recorded: not checked
        x = load_range(paths.grid_zarr, "flow", self.lo, self.hi, expect_grid=gsha, dataset=paths.name, stage="grid")
        f = load_range(paths.flow_zarr, "dflow", self.lo, self.hi, expect_grid=gsha, dataset=paths.name, stage="flow")
        self._x = self.scaler.transform(x).astype(np.float32)
        self._f = self.scaler.scale_diff(f).astype(np.float32)
        self.interval_minutes = int(self.meta["interval_minutes"])
        self._tid = series_time_ids(self.meta["start"], self.interval_minutes, self.hi)[self.lo :]

    def __len__(self) -> int:
        return int(self.t0.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self._x.shape[2:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return int(self._x.shape[1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        t0 = int(self.t0[i])
        a = t0 - self.lo
        h, f = self.history, self.horizon
        return {
            "x": torch.from_numpy(self._x[a : a + h]),
            "x_flow": torch.from_numpy(self._f[a : a + h]),
            "y": torch.from_numpy(self._x[a + h : a + h + f]),
            "y_flow": torch.from_numpy(self._f[a + h : a + h + f]),
            "t0": torch.tensor(t0, dtype=torch.int64),
            "time_ids": torch.from_numpy(self._tid[a : a + h + f]),
        }
