"""The two split protocols (``data.split``) and the history->horizon windows of each split.

**ratio** (a list, default ``[0.7, 0.15, 0.15]``): a chronological cut of the series and windows built inside each part.

``bounds``: train ``[0, a)``, val ``[a, b)``, test ``[b, T)`` with ``a = floor(T * f_train)``,
``b = floor(T * (f_train + f_val))`` (fractions from ``data.split``). A window with first input step ``t0`` uses steps
``t0 .. t0 + history + horizon - 1``; windows start at every step such that all of them lie in the window's split, so no
window crosses a boundary and a split of length ``n`` holds ``n - history - horizon + 1`` windows (stride 1).
A split too short for one window raises :class:`~stvfm.errors.DataError` with the numbers.

**published** (the string ``published``): the file's own train/val/test windows, exactly as UniST feeds them (its
files come split and windowed: 12-step windows = 6 in + 6 out; :mod:`stvfm.data.unist` keeps each window's first step
in the grid's attr ``published_windows``). ``bounds[split]`` is then the range the split's windows cover; consecutive
splits may overlap (a window list cut by ratio), and the scaler is still fitted on the train windows' steps only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from stvfm.errors import DataError

SPLITS = ("train", "val", "test")


def split_bounds(T: int, fractions: Sequence[float]) -> dict[str, tuple[int, int]]:
    f = [float(v) for v in fractions]
    a = math.floor(T * f[0] + 1e-9)
    b = math.floor(T * (f[0] + f[1]) + 1e-9)
    return {"train": (0, a), "val": (a, b), "test": (b, int(T))}


def check_lengths(
    bounds: dict[str, tuple[int, int]],
    history: int,
    horizon: int,
    *,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    dataset: str | None = None,
    path: str | None = None,
) -> None:
    need = history + horizon
    short = {s: hi - lo for s, (lo, hi) in bounds.items() if hi - lo < need}
    if short:
        T = max(hi for _, hi in bounds.values())
        lens = ", ".join(f"{s} {hi - lo}" for s, (lo, hi) in bounds.items())
        raise DataError(
            f"series of {T} steps is too short: split lengths {lens} steps, but one {history}->{horizon} window "
            f"needs {need} steps in every split (too short: {', '.join(short)}). Use a series of at least "
            f"{math.ceil(need / min(fractions))} steps, or smaller data.history/data.horizon",
            dataset=dataset,
            path=path,
        )


def make_windows(bounds: dict[str, tuple[int, int]], history: int, horizon: int) -> pd.DataFrame:
    """One row per window: ``split``, ``t0`` (absolute index of the first input step)."""
    parts = []
    for s in SPLITS:
        lo, hi = bounds[s]
        t0 = np.arange(lo, hi - history - horizon + 1, dtype=np.int64)
        parts.append(pd.DataFrame({"split": pd.Series([s] * len(t0), dtype="string"), "t0": t0}))
    return pd.concat(parts, ignore_index=True)


def published_windows(
    pub: dict | None,
    T: int,
    history: int,
    horizon: int,
    *,
    dataset: str | None = None,
    path: str | None = None,
    source: str | None = None,
) -> tuple[dict[str, tuple[int, int]], pd.DataFrame]:
    """Bounds and windows of the ``published`` protocol from the grid's ``published_windows`` attr."""
    if not pub:
        what = f" (its source is {source})" if source else ""
        raise DataError(
            f"data.split 'published': this data has no published train/val/test split{what}; only "
            "UniST's files come split. Use a ratio, e.g. data.split=[0.7,0.15,0.15]",
            dataset=dataset,
            path=path,
        )
    L = int(pub["window"])
    if history + horizon != L:
        raise DataError(
            f"data.split 'published': the file's windows have {L} steps, but data.history + data.horizon "
            f"= {history} + {horizon}; UniST feeds them as {L // 2} in + {L - L // 2} out (set data.history "
            f"and data.horizon to match)",
            dataset=dataset,
            path=path,
        )
    bounds, parts = {}, []
    for s in SPLITS:
        t0 = np.sort(np.asarray(pub["t0"].get(s, []), dtype=np.int64))
        if t0.size == 0:
            raise DataError(f"data.split 'published': the file has no {s} windows", dataset=dataset, path=path)
        if t0[0] < 0 or t0[-1] + L > T:
            raise DataError(
                f"the published {s} windows reach past the grid's {T} steps: the grid store is stale; "
                f"rerun `dvc repro grid@{dataset}`",
                dataset=dataset,
                path=path,
            )
        bounds[s] = (int(t0[0]), int(t0[-1]) + L)
        parts.append(pd.DataFrame({"split": pd.Series([s] * len(t0), dtype="string"), "t0": t0}))
    return bounds, pd.concat(parts, ignore_index=True)
