"""STID (Shao et al., CIKM 2022, "Spatial-Temporal Identity"), adapted to grids: the paper's deep spatio-temporal baseline.

STID embeds each node's input window with a linear layer (the original's 1×1 conv over the flattened history),
concatenates three *identity* embeddings — spatial (one learnable vector per node), time-of-day and day-of-week — and
maps the result with residual MLP layers to the whole horizon at once.

Grid adaptation: every cell of the H×W grid is a node (N = H·W), the node's input is its history of all C channels
(T_in·C values) and the output is T_out·C values, reshaped back to (B, T_out, C, H, W). No graph is needed.

Time identities: ``forward(x, x_flow=None, tod=None, dow=None)`` with ``tod``/``dow`` (B,) int tensors: the
time-of-day slot and day of week (Monday = 0) of the window's last input step. The project's training loop calls
``model(x, x_flow)`` (the contract of every model here) and STID has no use for the flow, so the time identity can ride
in the second argument: an **integer** tensor ``x_flow`` of shape (B, 2) is read as ``(tod, dow)``
(:class:`stvfm.baselines.fit.TimeIdentityWindows` feeds it that way; this is how the baselines stage trains STID).
Given a float flow tensor (the plain train stage with ``model.arch=stid``) or nothing, the time embeddings are left out
(zero-filled) and the model is STID with the spatial identity only. The time-of-day table has ``steps_per_day`` = 288
rows by default, enough for any interval of 5 minutes or more.
"""
from __future__ import annotations

import torch
from torch import nn

try:  # the project-wide output type (stvfm.models); a structural stand-in keeps this module importable on its own
    from stvfm.models import ModelOutput
except ImportError:  # pragma: no cover - only before stvfm.models exists
    from typing import NamedTuple

    class ModelOutput(NamedTuple):  # type: ignore[no-redef]
        st: torch.Tensor
        flow: torch.Tensor | None = None


class _ResidualMLP(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.act, self.drop = nn.ReLU(), nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.drop(self.act(self.fc1(h))))


class STID(nn.Module):
    def __init__(self, grid: tuple[int, int], channels: int, history: int = 6, horizon: int = 6, *,
                 embed_dim: int = 64, node_dim: int = 32, tod_dim: int = 16, dow_dim: int = 16, num_layers: int = 3,
                 steps_per_day: int = 288, dropout: float = 0.1, **_ignored):
        super().__init__()
        self.grid, self.channels, self.history, self.horizon = tuple(grid), int(channels), int(history), int(horizon)
        self.num_nodes = int(grid[0]) * int(grid[1])
        self.steps_per_day = int(steps_per_day)
        self.input_proj = nn.Linear(self.history * self.channels, embed_dim)
        self.node_emb = nn.Parameter(torch.empty(self.num_nodes, node_dim))
        self.tod_emb = nn.Parameter(torch.empty(self.steps_per_day, tod_dim))
        self.dow_emb = nn.Parameter(torch.empty(7, dow_dim))
        for p in (self.node_emb, self.tod_emb, self.dow_emb):
            nn.init.xavier_uniform_(p)
        self.tod_dim, self.dow_dim = tod_dim, dow_dim
        self.use_time_ids = False  # the baselines stage switches this on (STID's time identities from ``time_ids``)
        hidden = embed_dim + node_dim + tod_dim + dow_dim
        self.encoder = nn.Sequential(*[_ResidualMLP(hidden, dropout) for _ in range(num_layers)])
        self.regression = nn.Linear(hidden, self.horizon * self.channels)

    def forward(self, x: torch.Tensor, x_flow: torch.Tensor | None = None, tod: torch.Tensor | None = None,
                dow: torch.Tensor | None = None, time_ids: torch.Tensor | None = None) -> ModelOutput:
        B, T, C, H, W = x.shape
        if (T, C, (H, W)) != (self.history, self.channels, self.grid):
            raise ValueError(f"STID built for (T={self.history}, C={self.channels}, grid={self.grid}), "
                             f"got input (T={T}, C={C}, grid={(H, W)})")
        if tod is None and dow is None and time_ids is not None and self.use_time_ids:
            tod, dow = time_ids[:, self.history - 1, 0], time_ids[:, self.history - 1, 1]
        if tod is None and dow is None and x_flow is not None and not x_flow.is_floating_point() and x_flow.dim() == 2:
            tod, dow = x_flow[:, 0], x_flow[:, 1]
        series = x.permute(0, 3, 4, 1, 2).reshape(B, self.num_nodes, T * C)  # (B, N, T*C), node = y*W + x
        parts = [self.input_proj(series), self.node_emb.unsqueeze(0).expand(B, -1, -1)]
        if tod is not None:
            parts.append(self.tod_emb[tod.long() % self.steps_per_day].unsqueeze(1).expand(-1, self.num_nodes, -1))
        else:
            parts.append(series.new_zeros(B, self.num_nodes, self.tod_dim))
        if dow is not None:
            parts.append(self.dow_emb[dow.long() % 7].unsqueeze(1).expand(-1, self.num_nodes, -1))
        else:
            parts.append(series.new_zeros(B, self.num_nodes, self.dow_dim))
        h = self.encoder(torch.cat(parts, dim=-1))
        out = self.regression(h).reshape(B, H, W, self.horizon, C).permute(0, 3, 4, 1, 2)
        return ModelOutput(st=out.contiguous(), flow=None)
