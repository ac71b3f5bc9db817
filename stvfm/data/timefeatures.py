"""Time identities of each step of a window: (time-of-day slot, day of week), the clock that STID and the time-aware
ST-VFM read (beyond the paper; ``model.time_identity``).

Contract used across the project (training loop, evaluation, predict, serving, batch forecasts):
``WindowDataset[i]["time_ids"]`` and the models' ``forward(x, x_flow=None, time_ids=None)`` take an int64 tensor
``(B, history + horizon, 2)``: column 0 is the slot of the day (minutes since midnight // interval, so
``steps_per_day(interval)`` values), column 1 the day of week (Monday = 0), for every input step and every forecast
step.

One clock: :func:`time_ids` is the only place that maps a timestamp to its slot, and :func:`steps_per_day` the only
place that sizes a day; every time-of-day table (the time identity, the anchored output path, STID, HA) has
``steps_per_day`` rows. Slots are ``0 .. ceil(1440 / interval) - 1``: for an interval that does not divide a day (e.g.
7 minutes) the last slot of a day is a short one (23:55-23:59 -> slot 205 of 206), so the day is sized with ceil; for an
interval that divides a day (every dataset of the paper) ceil and floor agree.
Times are the series' own wall-clock times (e.g. NYC local time for the NYC samples), as stored in the split meta's
``start`` / the Zarr ``time`` axis; a window is identified by the time of its **last input step**.
"""

from __future__ import annotations

import numpy as np

__all__ = ["series_time_ids", "steps_per_day", "time_ids", "window_time_ids"]


def steps_per_day(interval_minutes: int) -> int:
    """Number of slots in a day at ``interval_minutes``: ceil(1440 / interval), so every slot :func:`time_ids` gives
    (minutes since midnight // interval, at most 1439 // interval) has a row."""
    return max(1, -(-(24 * 60) // int(interval_minutes)))


def time_ids(times, interval_minutes: int) -> np.ndarray:
    """int64 (N, 2) [slot of day, day of week (Monday = 0)] of datetime64 ``times``."""
    t = np.asarray(times).astype("datetime64[m]")
    days = t.astype("datetime64[D]")
    tod = (t - days).astype(np.int64) // int(interval_minutes)
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return np.stack([tod, dow], axis=-1).astype(np.int64)


def series_time_ids(start, interval_minutes: int, n_steps: int) -> np.ndarray:
    """(n_steps, 2) ids of a regular series beginning at ``start`` (ISO string or datetime64)."""
    t0 = np.datetime64(str(start), "m")
    return time_ids(t0 + np.arange(int(n_steps)) * np.timedelta64(int(interval_minutes), "m"), interval_minutes)


def window_time_ids(last_time, interval_minutes: int, history: int, horizon: int) -> np.ndarray:
    """(B, history + horizon, 2) ids of windows whose last input step is at ``last_time``.

    ``last_time``: unix seconds (int/float or array of shape (B,)) or datetime64 / ISO strings, on the series' clock.
    """
    lt = np.atleast_1d(np.asarray(last_time))
    if lt.dtype.kind in "iuf":
        lt = (lt.astype(np.float64) * 1e3).astype("int64").astype("datetime64[ms]")
    lt = lt.astype("datetime64[m]")
    offs = (np.arange(int(history) + int(horizon)) - (int(history) - 1)) * np.timedelta64(int(interval_minutes), "m")
    return time_ids(lt[:, None] + offs[None, :], interval_minutes)
