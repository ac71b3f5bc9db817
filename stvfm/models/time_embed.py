"""Time identity (beyond the paper; ``model.time_identity``): time-of-day and day-of-week embeddings of every step.

Input: ``time_ids`` int64 (B, history + horizon, 2) = [slot of day, day of week (Monday = 0)] (the contract of
:mod:`stvfm.data.timefeatures`). Output: (B, history + horizon, dim) = E_tod[slot] + E_dow[dow]. The model adds
the first ``history`` rows to the input tokens of every step and all rows to its temporal decoder's sequence (so each
future query knows its own clock). The table has ``steps_per_day(interval_minutes)`` rows, from the data's interval.
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.data.timefeatures import steps_per_day
from stvfm.errors import DataError


class TimeIdentity(nn.Module):
    def __init__(self, interval_minutes: int, dim: int):
        super().__init__()
        self.steps_per_day = steps_per_day(interval_minutes)
        self.tod = nn.Embedding(self.steps_per_day, dim)
        self.dow = nn.Embedding(7, dim)
        for e in (self.tod, self.dow):
            nn.init.trunc_normal_(e.weight, std=0.02)

    def forward(self, time_ids: torch.Tensor) -> torch.Tensor:
        tod, dow = time_ids[..., 0].long(), time_ids[..., 1].long()
        return self.tod(tod % self.steps_per_day) + self.dow(dow % 7)


def check_time_ids(time_ids: torch.Tensor | None, batch: int, steps: int, who: str) -> torch.Tensor:
    """The ids a time-aware model was given, or a DataError that says what is missing."""
    if time_ids is None:
        raise DataError(
            f"{who} needs the time identities of its input (model.time_identity / STID): time_ids "
            f"(B, {steps}, 2) [slot of day, day of week]; got None. Give the input's timestamps "
            f"(split meta start/interval_minutes, .npz start/freq_minutes, or --last-time)"
        )
    if tuple(time_ids.shape) != (batch, steps, 2):
        raise DataError(
            f"{who}: time_ids has shape {tuple(time_ids.shape)}; expected ({batch}, {steps}, 2) "
            f"[slot of day, day of week] for every input and forecast step"
        )
    return time_ids
