"""Temporal-aware token adapter (§3.3): tokenizer -> temporal context encoder -> token adaptation (Eq. 7) ->
learnable positional embedding (Eq. 8). Output tokens are (B·T, N_s, D_VFM): T merged into the batch axis, the layout
the frozen VFM consumes.

``simple=True`` is the "simple adaptation" of ablation #1: one linear map Ps²·C -> D_VFM (plus the positional
embedding), no D_T space and no temporal Transformer.
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.models.pos_embed import LearnablePosEmbed
from stvfm.models.temporal_encoder import TemporalContextEncoder
from stvfm.models.tokenizer import PatchTokenizer


class TokenAdaptation(nn.Module):
    """W_adapt ∈ R^{D_T × D_VFM} applied to (B·T·N_s) tokens (Eq. 7)."""

    def __init__(self, d_temporal: int, d_vfm: int):
        super().__init__()
        self.linear = nn.Linear(d_temporal, d_vfm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


class TemporalAwareTokenAdapter(nn.Module):
    def __init__(
        self,
        tokenizer: PatchTokenizer,
        d_temporal: int,
        d_vfm: int,
        temporal_layers: int,
        heads: int,
        steps: int,
        dropout: float = 0.0,
        simple: bool = False,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        if simple:
            self.encoder = None
            self.adapt = TokenAdaptation(tokenizer.patch_dim, d_vfm)
        else:
            self.encoder = TemporalContextEncoder(
                tokenizer.patch_dim, d_temporal, temporal_layers, heads, steps, dropout
            )
            self.adapt = TokenAdaptation(d_temporal, d_vfm)
        self.pos = LearnablePosEmbed(tokenizer.num_patches, d_vfm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C, H, W) -> tokens (B·T, N_s, D_VFM)."""
        tok = self.tokenizer(x)  # B, T, N_s, Ps²C
        z = self.encoder(tok) if self.encoder is not None else tok
        z = self.pos(self.adapt(z))  # Eq. 7 + Eq. 8 (pos broadcast over T)
        b, t, n, d = z.shape
        return z.reshape(b * t, n, d)
