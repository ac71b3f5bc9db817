"""Output path (beyond the paper; ``model.output``): what the ST decoder's output is added to.

    plain     the paper: forecast = decoder output (absolute values from learned queries)
    last      forecast = last input step + decoder output (the naive residual; measured worse, kept for the ablation)
    anchored  forecast = a[h, c, y, x] · last input step + A[slot(h), c, y, x] + decoder output, where ``a`` is a learned
              per-cell, per-horizon-step weight on the last observation and ``A`` a learned per-cell time-of-day table
              (a learned historical average, indexed by the clock of each forecast step). Both start at 0, so training
              starts from the paper's decoder and moves towards persistence/HA only where they help.

All in the model's (scaled) space; tensors (B, T_out, C, H, W). ``anchored`` needs ``time_ids`` (B, T_in + T_out, 2).
"""
from __future__ import annotations

import torch
from torch import nn

from stvfm.data.timefeatures import steps_per_day

OUTPUTS = ("plain", "last", "anchored")


class OutputPath(nn.Module):
    def __init__(self, kind: str, grid: tuple[int, int], channels: int, history: int, horizon: int,
                 interval_minutes: int | None = None):
        super().__init__()
        if kind not in OUTPUTS:
            raise ValueError(f"output path '{kind}' is not one of {', '.join(OUTPUTS)}")
        self.kind, self.history, self.horizon = kind, int(history), int(horizon)
        shape = (int(channels), int(grid[0]), int(grid[1]))
        if kind == "anchored":
            if interval_minutes is None:
                raise ValueError("output path 'anchored' needs the data interval (interval_minutes)")
            self.steps_per_day = steps_per_day(interval_minutes)
            self.last_weight = nn.Parameter(torch.zeros(self.horizon, *shape))
            self.table = nn.Parameter(torch.zeros(self.steps_per_day, *shape))

    @property
    def needs_time_ids(self) -> bool:
        return self.kind == "anchored"

    def forward(self, dec: torch.Tensor, x: torch.Tensor, time_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "plain":
            return dec
        last = x[:, -1:].to(dec.dtype)  # (B, 1, C, H, W)
        if self.kind == "last":
            return dec + last
        slots = time_ids[:, self.history:self.history + self.horizon, 0].long() % self.steps_per_day  # (B, T_out)
        return dec + self.last_weight.to(dec.dtype) * last + self.table[slots].to(dec.dtype)
