"""Temporal context encoder (§3.3 (2)): linear projection Ps²·C -> D_T (Eq. 5), then a temporal Transformer over the T
steps of each spatial location, shared across all N_s locations and run as one batched call on (B·N_s, T, D_T) (Eq. 6).

The Transformer layers are pre-norm blocks calling SDPA (:mod:`stvfm.models.layers`); a learnable time embedding
gives them the order of the steps.
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.models.layers import TransformerBlock


class TemporalTransformer(nn.Module):
    """Self-attention over the time axis of (batch, T, D) sequences."""

    def __init__(self, dim: int, layers: int, heads: int, steps: int, dropout: float = 0.0):
        super().__init__()
        self.time = nn.Parameter(torch.zeros(steps, dim))
        nn.init.trunc_normal_(self.time, std=0.02)
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim) if layers else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.time[: z.shape[1]]
        for layer in self.layers:
            z = layer(z)
        return self.norm(z)


class TemporalContextEncoder(nn.Module):
    """(B, T, N_s, Ps²·C) -> (B, T, N_s, D_T). With ``layers=0`` only the projection of Eq. 5 (variant #2)."""

    def __init__(self, patch_dim: int, d_temporal: int, layers: int, heads: int, steps: int, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(patch_dim, d_temporal)  # W_proj, Eq. 5
        self.temporal = TemporalTransformer(d_temporal, layers, heads, steps, dropout) if layers > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x)
        if self.temporal is None:
            return z
        b, t, n, d = z.shape
        z = z.permute(0, 2, 1, 3).reshape(b * n, t, d)  # every location is one sequence over T (Eq. 6)
        z = self.temporal(z)
        return z.reshape(b, n, t, d).permute(0, 2, 1, 3)
