"""STID (Shao et al., CIKM 2022, "Spatial-Temporal Identity"), on grids: the paper's deep spatio-temporal baseline.

Each series' input window is embedded by a linear layer; three *identity* embeddings are concatenated to it — spatial
(one learnable vector per series), time-of-day and day-of-week of the window's **last input step** — and residual MLP
layers map the result to the whole horizon at once (as BasicTS's STID: ``input/node/tod/dow`` 32-d each, 3 layers,
dropout 0.15 inside each layer: ``model.stid.dropout``). With ``model.stid.time_inputs`` the window embedding also reads
every input step's time in day and day in week as fractions in [0, 1) (BasicTS's configs: ``input_dim`` 3).

Series on a grid (``model.stid.series``):

- ``cell_channel`` (default, as BasicTS, which treats every feature as its own series): every (cell, channel) of the
  H×W×C grid is a series with its own spatial identity; input ``T_in`` values, output ``T_out``.
- ``cell``: every cell is a node whose input is all its channels (``T_in·C`` values) and output ``T_out·C``.

Time identities follow the project contract: ``forward(x, x_flow=None, time_ids=None)`` with ``time_ids`` the int64
(B, history + horizon, 2) [slot of day, day of week] of every step (:mod:`stvfm.data.timefeatures`); STID reads row
``history - 1``. The time-of-day table has ``steps_per_day`` rows, the number of slots in a day at the data interval.
With ``time_identity=False`` the two time embeddings are left out (STID with the spatial identity only); with it on, a
call without ``time_ids`` is an error (a silent zero clock would be a different model). STID has no flow branch
(``flow=None``) and ignores ``x_flow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from stvfm.data.timefeatures import steps_per_day
from stvfm.errors import ConfigError
from stvfm.models.output import ModelOutput

if TYPE_CHECKING:
    from stvfm.config import ModelConfig

SERIES = ("cell_channel", "cell")


class ResidualMLP(nn.Module):
    """``h + fc2(dropout(relu(fc1(h))))`` (BasicTS's ResMLPLayer / STID's MLP_res)."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.act, self.drop = nn.ReLU(), nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.drop(self.act(self.fc1(h))))


class STID(nn.Module):
    def __init__(
        self,
        grid: tuple[int, int],
        channels: int,
        history: int = 6,
        horizon: int = 6,
        *,
        steps_per_day: int = 48,
        input_dim: int = 32,
        node_dim: int = 32,
        tod_dim: int = 32,
        dow_dim: int = 32,
        num_layers: int = 3,
        dropout: float = 0.0,
        series: str = "cell_channel",
        time_identity: bool = True,
        time_inputs: bool = False,
    ):
        super().__init__()
        if series not in SERIES:
            raise ValueError(f"model.stid.series: '{series}' is not one of {', '.join(SERIES)}")
        self.grid, self.channels, self.history, self.horizon = tuple(grid), int(channels), int(history), int(horizon)
        self.series, self.time_identity, self.steps_per_day = series, bool(time_identity), int(steps_per_day)
        cells = int(grid[0]) * int(grid[1])
        self.num_series = cells * self.channels if series == "cell_channel" else cells
        per = 1 if series == "cell_channel" else self.channels  # values per step of one series
        self.time_inputs = bool(time_inputs)
        # BasicTS: the window embedding also reads each step's time in day and day in week (fractions in [0, 1))
        self.input_proj = nn.Linear(self.history * (per + 2 * self.time_inputs), input_dim)
        self.node_emb = nn.Parameter(torch.empty(self.num_series, node_dim))
        nn.init.xavier_uniform_(self.node_emb)
        hidden = input_dim + node_dim
        if self.time_identity:
            self.tod_emb = nn.Parameter(torch.empty(self.steps_per_day, tod_dim))
            self.dow_emb = nn.Parameter(torch.empty(7, dow_dim))
            nn.init.xavier_uniform_(self.tod_emb)
            nn.init.xavier_uniform_(self.dow_emb)
            hidden += tod_dim + dow_dim
        self.encoder = nn.Sequential(*[ResidualMLP(hidden, dropout) for _ in range(num_layers)])
        self.regression = nn.Linear(hidden, self.horizon * per)

    @property
    def reads_clock(self) -> bool:
        """Whether forward needs ``time_ids`` (time identities or time inputs)."""
        return self.time_identity or self.time_inputs

    def forward(
        self, x: torch.Tensor, x_flow: torch.Tensor | None = None, time_ids: torch.Tensor | None = None
    ) -> ModelOutput:
        B, T, C, H, W = x.shape
        if (self.history, self.channels, self.grid) != (T, C, (H, W)):
            raise ValueError(
                f"STID built for (T={self.history}, C={self.channels}, grid={self.grid}), "
                f"got input (T={T}, C={C}, grid={(H, W)})"
            )
        if self.series == "cell_channel":  # (B, C*H*W, T): series index = c*H*W + y*W + x
            series = x.permute(0, 2, 3, 4, 1).reshape(B, self.num_series, T)
        else:  # (B, H*W, T*C): node index = y*W + x
            series = x.permute(0, 3, 4, 1, 2).reshape(B, self.num_series, T * C)
        if self.reads_clock and time_ids is None:
            raise ValueError(
                "STID with time identities (model.stid.time_identity / time_inputs) needs time_ids "
                "(B, history + horizon, 2); the training loop and evaluation pass them"
            )
        if self.time_inputs:  # (B, N, T, per + 2): each step's values, then its time in day and day in week
            frac = torch.stack(
                [time_ids[:, :T, 0].float() / self.steps_per_day, (time_ids[:, :T, 1] % 7).float() / 7.0], dim=-1
            ).to(series.dtype)
            steps = series.reshape(B, self.num_series, T, -1)
            frac = frac.unsqueeze(1).expand(-1, self.num_series, -1, -1)
            series = torch.cat([steps, frac], dim=-1).reshape(B, self.num_series, -1)
        parts = [self.input_proj(series), self.node_emb.unsqueeze(0).expand(B, -1, -1)]
        if self.time_identity:
            last = time_ids[:, self.history - 1]
            tod, dow = last[:, 0].long(), last[:, 1].long()
            parts.append(self.tod_emb[tod].unsqueeze(1).expand(-1, self.num_series, -1))
            parts.append(self.dow_emb[dow].unsqueeze(1).expand(-1, self.num_series, -1))
        out = self.regression(self.encoder(torch.cat(parts, dim=-1)))
        if self.series == "cell_channel":
            out = out.reshape(B, C, H, W, self.horizon).permute(0, 4, 1, 2, 3)
        else:
            out = out.reshape(B, H, W, self.horizon, C).permute(0, 3, 4, 1, 2)
        return ModelOutput(st=out.contiguous(), flow=None)


def build_stid(
    cfg: ModelConfig, grid: tuple[int, int], channels: int, history: int, horizon: int, interval_minutes: int | None
) -> nn.Module:
    s = cfg.stid
    if s.series not in SERIES:
        raise ConfigError(f"model.stid.series: '{s.series}' is not one of {', '.join(SERIES)}")
    for key in ("input_dim", "node_dim", "tod_dim", "dow_dim", "num_layers"):
        if getattr(s, key) < 1:
            raise ConfigError(f"model.stid.{key}: must be >= 1, got {getattr(s, key)}")
    if not 0.0 <= s.dropout < 1.0:
        raise ConfigError(f"model.stid.dropout: must be in [0, 1), got {s.dropout}")
    if (s.time_identity or s.time_inputs) and not interval_minutes:
        raise ConfigError(
            "model.stid.time_identity / time_inputs need the data interval (interval_minutes) to size the "
            "time-of-day table"
        )
    per_day = steps_per_day(interval_minutes) if interval_minutes else 1  # the project's one clock
    return STID(
        grid,
        channels,
        history,
        horizon,
        steps_per_day=per_day,
        input_dim=s.input_dim,
        node_dim=s.node_dim,
        tod_dim=s.tod_dim,
        dow_dim=s.dow_dim,
        num_layers=s.num_layers,
        dropout=s.dropout,
        series=s.series,
        time_identity=s.time_identity,
        time_inputs=s.time_inputs,
    )
