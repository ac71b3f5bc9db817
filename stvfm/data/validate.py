"""Checks on the canonical form before anything is written: a bad series raises DataError naming dataset + file."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from stvfm.errors import DataError

DIMS = ("time", "y", "x", "channel")


def validate_flow(
    ds: xr.Dataset,
    *,
    dataset: str | None = None,
    path: str | None = None,
    grid: Sequence[int] | None = None,
    channels: int | None = None,
) -> None:
    """Refuse NaN/inf, negative values, a wrong rank / dims, an empty series, and (where the dataset table knows it)
    a grid or channel count other than the spec's."""
    if "flow" not in ds.data_vars:
        raise DataError(f"no variable 'flow' in the series (vars {list(ds.data_vars)})", dataset=dataset, path=path)
    da = ds["flow"]
    if da.ndim != 4:
        raise DataError(
            f"series has rank {da.ndim} (shape {tuple(da.shape)}); expected rank 4 (time, y, x, channel)",
            dataset=dataset,
            path=path,
        )
    if tuple(da.dims) != DIMS:
        raise DataError(f"series dims {da.dims}; expected {DIMS}", dataset=dataset, path=path)
    _, H, W, C = da.shape
    if min(da.shape) < 1:
        raise DataError(f"empty series, shape {tuple(da.shape)}", dataset=dataset, path=path)
    v = np.asarray(da.values)
    bad = ~np.isfinite(v)
    if bad.any():
        t, y, x, c = np.unravel_index(int(np.argmax(bad)), v.shape)
        kind = "NaN" if np.isnan(v[t, y, x, c]) else "inf"
        raise DataError(
            f"{int(bad.sum())} non-finite values (NaN/inf); first is {kind} at time step {t}, cell ({y}, {x}), "
            f"channel {c}. Fill or drop the missing steps before using the file",
            dataset=dataset,
            path=path,
        )
    neg = v < 0
    if neg.any():
        t, y, x, c = np.unravel_index(int(np.argmax(neg)), v.shape)
        raise DataError(
            f"{int(neg.sum())} negative values (min {float(v.min())}); first at time step {t}, cell ({y}, {x}), "
            f"channel {c}. Counts/speeds/usage cannot be negative",
            dataset=dataset,
            path=path,
        )
    if grid is not None and tuple(int(g) for g in grid) != (H, W):
        raise DataError(
            f"grid is {H}x{W} but the dataset table says {grid[0]}x{grid[1]}; wrong file for this dataset?",
            dataset=dataset,
            path=path,
        )
    if channels is not None and int(channels) != C:
        raise DataError(f"series has {C} channels but the dataset table says {channels}", dataset=dataset, path=path)
