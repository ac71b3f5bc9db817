"""Learnable spatial positional embedding E_pos ∈ R^{N_s × D_VFM} (Eq. 8).

Initialised independently (truncated normal, std 0.02, as ViT initialises its own) rather than interpolated from the
VFM's 224-px image embedding, and broadcast over the T frames: Z_vfm <- Z_vfm + E_pos.
"""

from __future__ import annotations

import torch
from torch import nn


class LearnablePosEmbed(nn.Module):
    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(num_tokens, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., N_s, D) — e.g. (B, T, N_s, D); the same embedding for every frame."""
        return z + self.pos
