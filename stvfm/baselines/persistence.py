"""Persistence: every forecast step repeats the last input step, ``Ŷ[t0+history+h] = X[t0+history-1]``."""

from __future__ import annotations

import numpy as np


def persistence_forecast(series: np.ndarray, t0: np.ndarray, history: int = 6, horizon: int = 6) -> np.ndarray:
    """``series`` (T, ...) and window starts ``t0`` (N,) -> (N, horizon, ...)."""
    last = series[np.asarray(t0) + history - 1]
    return np.repeat(last[:, None], horizon, axis=1)
