"""The canonical form every reader returns: an ``xarray.Dataset`` with var ``flow`` float32 dims
``(time, y, x, channel)``, coords ``time`` (datetime64[ns], regular, step ``interval_minutes``) and ``channel`` (names),
attrs ``interval_minutes``, ``bbox`` (or None), ``start``, and what the reader adds (``source``, ``note`` ...).
The readers of each format (:mod:`stvfm.data.readers`, :mod:`stvfm.data.unist`) build it with :func:`canonical`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from stvfm.data.gridding import CHANNELS as TRIP_CHANNELS
from stvfm.errors import DataError


def canonical(
    flow: np.ndarray, start: Any, interval_minutes: int, channel_names: Sequence[str] | None = None, **attrs: Any
) -> xr.Dataset:
    """Wrap a (T, H, W, C) array in the canonical Dataset."""
    flow = np.asarray(flow)
    T, _, _, C = flow.shape
    names = (
        list(channel_names)
        if channel_names is not None and len(channel_names) == C
        else (list(TRIP_CHANNELS) if C == 2 else [f"ch{i}" for i in range(C)])
    )
    t0 = parse_start(start)
    times = t0 + np.arange(T) * np.timedelta64(int(interval_minutes) * 60, "s").astype("timedelta64[ns]")
    ds = xr.Dataset(
        {"flow": (("time", "y", "x", "channel"), flow.astype(np.float32, copy=False))},
        coords={"time": times, "channel": np.array(names, dtype=object)},
    )
    ds.attrs.update({"interval_minutes": int(interval_minutes), "bbox": None, "start": str(t0.astype("datetime64[s]"))})
    ds.attrs.update(attrs)
    return ds


def parse_start(v: Any, *, dataset: str | None = None, path: str | None = None) -> np.datetime64:
    """The first step's start as datetime64[ns]; a value that is not a date/time is a :class:`DataError`."""
    s = _iso(v)
    try:
        return np.datetime64(s, "ns")
    except (ValueError, TypeError, OverflowError):
        raise DataError(
            f"'start' {s[:60]!r} is not an ISO date/time (e.g. 2024-01-01 or 2024-01-01T00:00:00)",
            dataset=dataset,
            path=path,
        ) from None


def _iso(v: Any) -> str:
    if v is None:
        return "1970-01-01T00:00:00"
    if isinstance(v, np.ndarray):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    return str(v)
