"""ST flow (Eq. 4 of the paper), stored beside the grid.

The paper defines the forward difference ``ΔtX(t) = X(t+1) - X(t)``. Used as a model *input* that would put step
``t+1`` into the input at ``t``, so the stored flow is the same difference attached to the later step (a backward
difference)::

    dflow[t] = X[t] - X[t-1]   for t >= 1
    dflow[0] = 0               (no earlier step; the first step has no change by definition)

Step ``t`` thus uses only ``X[t-1]`` and ``X[t]``: an input window ``t0 .. t0+5`` sees ``dflow[t0 .. t0+5]``,
computed from ``X[t0-1 .. t0+5]`` (its own past), and the target flow ``dflow[t0+6 .. t0+11]`` continues from the last
input step. The flow is linear, so the flow of the scaled series is ``dflow / std`` (``Scaler.scale_diff``); only the
raw-count flow is stored.
"""

from __future__ import annotations

import numpy as np
import xarray as xr


def st_flow(x: np.ndarray) -> np.ndarray:
    """Backward temporal difference along axis 0 with a zero first step (same shape and dtype as ``x``)."""
    x = np.asarray(x)
    out = np.empty_like(x)
    out[0] = 0
    np.subtract(x[1:], x[:-1], out=out[1:])
    return out


def flow_dataset(grid: xr.Dataset) -> xr.Dataset:
    """The canonical grid Dataset -> Dataset with var ``dflow`` (same dims, coords and attrs)."""
    v = np.asarray(grid["flow"].values, dtype=np.float32)
    ds = xr.Dataset({"dflow": (grid["flow"].dims, st_flow(v))}, coords=grid.coords)
    ds.attrs.update(grid.attrs)
    ds.attrs["definition"] = "dflow[t] = X[t] - X[t-1], dflow[0] = 0"
    return ds
