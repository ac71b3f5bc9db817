"""Historical average (HA), as the paper's appendix defines it: "predicts future values using the average of historical
data from corresponding periods in previous days".

- The *corresponding period* of a target step is its time-of-day slot (``period: day``; ``period: week`` uses the
  day-of-week × time-of-day slot instead), read from the grid's time coordinate.
- The averages are computed from the **train split only** (steps ``bounds.train``), so val/test targets never leak and
  every train day is a previous day of every val/test step.
- A slot with no train history (possible only when the train split is shorter than one period) falls back to the mean of
  that cell and channel over the whole train split. The number of such slots is reported as ``empty_slots``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stvfm.data.timefeatures import steps_per_day, time_ids
from stvfm.errors import ConfigError


def slot_index(times: np.ndarray, interval_minutes: int, period: str = "day") -> np.ndarray:
    """Slot of each timestamp: minutes since midnight // interval (+ day-of-week × slots per day for ``week``),
    from the project's one clock (:func:`stvfm.data.timefeatures.time_ids` / ``steps_per_day``)."""
    if period not in ("day", "week"):
        raise ConfigError(f"baselines.ha.period: '{period}' is not one of day, week")
    ids = time_ids(times, interval_minutes)
    tod, dow = ids[..., 0], ids[..., 1]
    return tod if period == "day" else dow * steps_per_day(interval_minutes) + tod


@dataclass
class HistoricalAverage:
    table: np.ndarray  # (n_slots, ...) average per slot
    slots: np.ndarray  # slot of every step of the series (T,)
    empty_slots: int

    @classmethod
    def fit(
        cls, series: np.ndarray, times: np.ndarray, interval_minutes: int, train: tuple[int, int], period: str = "day"
    ) -> HistoricalAverage:
        slots = slot_index(times, interval_minutes, period)
        n_slots = steps_per_day(interval_minutes) * (7 if period == "week" else 1)
        a, b = train
        tr, ts = series[a:b].astype(np.float64), slots[a:b]
        sums = np.zeros((n_slots, *series.shape[1:]))
        np.add.at(sums, ts, tr)
        counts = np.bincount(ts, minlength=n_slots).astype(np.float64)
        fallback = tr.mean(axis=0)
        table = np.where(
            counts.reshape(-1, *[1] * (series.ndim - 1)) > 0,
            sums / np.maximum(counts, 1).reshape(-1, *[1] * (series.ndim - 1)),
            fallback[None],
        )
        return cls(table, slots, int((counts == 0).sum()))

    def forecast(self, t0: np.ndarray, history: int = 6, horizon: int = 6) -> np.ndarray:
        idx = np.asarray(t0)[:, None] + history + np.arange(horizon)[None, :]
        return self.table[self.slots[idx]]
