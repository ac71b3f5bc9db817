"""Decoders: per-branch temporal Transformer decoder (§3.5) and the MLP decoder of ablation #1 (simple).

TemporalDecoder: for every spatial location (batched over B·N_s, shared weights) the T_in history features plus
T_out learned future-step query tokens form one sequence (with a learnable time embedding); pre-norm Transformer
layers attend over all of it, and the T_out query outputs are mapped by a linear head to Ps²·C patch values, which
the tokenizer un-patchifies to the grid (cropping padding). The last layer computes only those T_out rows (every row
still a key and value): the same outputs, without the FFN and attention of the T_in history rows nobody reads.
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.models.layers import TransformerBlock


class TemporalDecoder(nn.Module):
    """(B, T_in, N_s, D) -> (B, T_out, N_s, out_dim)."""

    def __init__(self, dim: int, layers: int, heads: int, t_in: int, t_out: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.t_in, self.t_out = t_in, t_out
        self.queries = nn.Parameter(torch.zeros(t_out, dim))
        self.time = nn.Parameter(torch.zeros(t_in + t_out, dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        nn.init.trunc_normal_(self.time, std=0.02)
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, h: torch.Tensor, clock: torch.Tensor | None = None) -> torch.Tensor:
        """``clock``: optional (B, T_in + T_out, D) time identity of every step, added to the history features and to
        the future queries (the same for every location)."""
        b, t, n, d = h.shape
        seq = h.permute(0, 2, 1, 3).reshape(b * n, t, d)
        q = self.queries.to(seq.dtype).unsqueeze(0).expand(b * n, -1, -1)
        seq = torch.cat([seq, q], dim=1) + self.time
        if clock is not None:
            seq = seq + clock.to(seq.dtype).unsqueeze(1).expand(b, n, *clock.shape[1:]).reshape(b * n, *clock.shape[1:])
        for i, layer in enumerate(self.layers):  # the last layer computes only the T_out query rows the head reads
            seq = layer(seq, rows_from=t if i == len(self.layers) - 1 else 0)
        out = self.head(self.norm(seq[:, -self.t_out :]))  # B·N, T_out, out_dim
        return out.reshape(b, n, self.t_out, -1).permute(0, 2, 1, 3)


class MLPDecoder(nn.Module):
    """Ablation #1: per location, the T_in VFM features (each first reduced to ``dim``) -> MLP -> T_out patches."""

    def __init__(self, d_vfm: int, dim: int, t_in: int, t_out: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.t_out = t_out
        self.reduce = nn.Linear(d_vfm, dim)
        self.mlp = nn.Sequential(
            nn.Linear(t_in * dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, t_out * out_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = h.shape
        z = self.reduce(h).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.mlp(z).reshape(b, n, self.t_out, -1).permute(0, 2, 1, 3)
