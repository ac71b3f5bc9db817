"""Output path (beyond the paper; ``model.output``): what the ST decoder's output is added to.

    plain     the paper: forecast = decoder output (absolute values from learned queries)
    last      forecast = last input step + decoder output (the naive residual; measured worse, kept for the ablation)
    identity  forecast = STID(x, clock) + decoder output: the per-series identity network of STID (a spatial identity
              per cell & channel, time-of-day / day-of-week identities, residual MLPs over the series' own history;
              stvfm.models.stid, sized by ``model.stid``) carries what every series knows of itself, and the VFM path
              (zero-initialised ST head) learns what only space can add. Trained jointly, end to end.
    anchored  forecast = a[h, c, y, x] · last input step + A[slot(h), c, y, x] + decoder output, where ``a`` is a
              learned per-cell, per-horizon-step weight on the last observation (starts at 0) and ``A`` a learned
              per-cell time-of-day table indexed by the clock of each forecast step. ``A`` starts from what is known:
              the train split's mean per slot of day and cell (:meth:`OutputPath.fit_anchor`, called by the training
              components with the scaled train series — HA), and the model zero-initialises its ST head, so training
              starts exactly at HA and the network learns the correction.

All in the model's (scaled) space; tensors (B, T_out, C, H, W). ``anchored`` needs ``time_ids`` (B, T_in + T_out, 2).
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.data.timefeatures import steps_per_day

OUTPUTS = ("plain", "last", "anchored", "identity")


class OutputPath(nn.Module):
    def __init__(
        self,
        kind: str,
        grid: tuple[int, int],
        channels: int,
        history: int,
        horizon: int,
        interval_minutes: int | None = None,
        identity: nn.Module | None = None,
    ):
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
        if kind == "identity":
            if identity is None:
                raise ValueError("output path 'identity' needs its identity network (stvfm.models.stid.STID)")
            self.identity = identity

    @torch.no_grad()
    def fit_anchor(self, series: torch.Tensor, slots: torch.Tensor) -> None:
        """Set the time-of-day table to the mean of ``series`` (T, C, H, W; the model's scaled space, train split only)
        per slot of day ``slots`` (T,); slots never seen get the overall mean."""
        if self.kind != "anchored":
            return
        series = series.float()
        slots = slots.long() % self.steps_per_day
        total = torch.zeros_like(self.table).index_add_(0, slots, series)
        count = torch.bincount(slots, minlength=self.steps_per_day).float().view(-1, 1, 1, 1)
        mean = series.mean(0, keepdim=True).expand_as(self.table)
        self.table.copy_(torch.where(count > 0, total / count.clamp(min=1), mean))

    @property
    def needs_time_ids(self) -> bool:
        if self.kind == "identity":
            return bool(getattr(self.identity, "reads_clock", False))
        return self.kind == "anchored"

    def forward(self, dec: torch.Tensor, x: torch.Tensor, time_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "plain":
            return dec
        if self.kind == "identity":
            return dec + self.identity(x, None, time_ids).st.to(dec.dtype)
        last = x[:, -1:].to(dec.dtype)  # (B, 1, C, H, W)
        if self.kind == "last":
            return dec + last
        slots = time_ids[:, self.history : self.history + self.horizon, 0].long() % self.steps_per_day  # (B, T_out)
        return dec + self.last_weight.to(dec.dtype) * last + self.table[slots].to(dec.dtype)
