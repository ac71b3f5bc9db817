"""Chronological 70/15/15 split and history->horizon windows built inside each split.

``bounds``: train ``[0, a)``, val ``[a, b)``, test ``[b, T)`` with ``a = floor(T * f_train)``,
``b = floor(T * (f_train + f_val))`` (fractions from ``data.split``). A window with first input step ``t0`` uses steps
``t0 .. t0 + history + horizon - 1``; windows start at every step such that all of them lie in the window's split, so no
window crosses a boundary and a split of length ``n`` holds ``n - history - horizon + 1`` windows (stride 1).
A split too short for one window raises :class:`~stvfm.errors.DataError` with the numbers.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from stvfm.errors import DataError

SPLITS = ("train", "val", "test")


def split_bounds(T: int, fractions: Sequence[float]) -> dict[str, tuple[int, int]]:
    f = [float(v) for v in fractions]
    a = int(math.floor(T * f[0] + 1e-9))
    b = int(math.floor(T * (f[0] + f[1]) + 1e-9))
    return {"train": (0, a), "val": (a, b), "test": (b, int(T))}


def check_lengths(bounds: dict[str, tuple[int, int]], history: int, horizon: int, *, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  dataset: str | None = None, path: str | None = None) -> None:
    need = history + horizon
    short = {s: hi - lo for s, (lo, hi) in bounds.items() if hi - lo < need}
    if short:
        T = max(hi for _, hi in bounds.values())
        lens = ", ".join(f"{s} {hi - lo}" for s, (lo, hi) in bounds.items())
        raise DataError(f"series of {T} steps is too short: split lengths {lens} steps, but one {history}->{horizon} window "
                        f"needs {need} steps in every split (too short: {', '.join(short)}). Use a series of at least "
                        f"{math.ceil(need / min(fractions))} steps, or smaller data.history/data.horizon", dataset=dataset, path=path)


def make_windows(bounds: dict[str, tuple[int, int]], history: int, horizon: int) -> pd.DataFrame:
    """One row per window: ``split``, ``t0`` (absolute index of the first input step)."""
    parts = []
    for s in SPLITS:
        lo, hi = bounds[s]
        t0 = np.arange(lo, hi - history - horizon + 1, dtype=np.int64)
        parts.append(pd.DataFrame({"split": pd.Series([s] * len(t0), dtype="string"), "t0": t0}))
    return pd.concat(parts, ignore_index=True)
