"""Houlsby adapter inside each frozen VFM block, between self-attention and the residual (§4.3, variant #4).

    x = x + ls1(adapter(attn(norm1(x))))          adapter(h) = h + W_up · GELU(W_down · h)
    x = x + ls2(mlp(norm2(x)))

``W_up`` (and its bias) start at zero, so at step 0 the adapted VFM computes exactly the frozen VFM. Houlsby et al.
also put a second adapter after the FFN; the paper places one between self-attention and the residual, so we do too.
When both branches run through the VFM in one batch (variant ``full``) the adapters are shared by the two branches,
like the VFM they live in.
"""

from __future__ import annotations

import torch
from torch import nn


class HoulsbyAdapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class AdaptedBlock(nn.Module):
    """A frozen timm ViT ``Block`` with a trainable :class:`HoulsbyAdapter` on its attention output."""

    def __init__(self, block: nn.Module, bottleneck: int):
        super().__init__()
        self.block = block
        dim = block.norm1.normalized_shape[0]
        self.adapter = HoulsbyAdapter(dim, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        x = x + b.drop_path1(b.ls1(self.adapter(b.attn(b.norm1(x)))))
        x = x + b.drop_path2(b.ls2(b.mlp(b.norm2(x))))
        return x


def add_adapters(vfm: nn.Module, bottleneck: int) -> None:
    """Wrap every block of a :class:`~stvfm.models.backbone.FrozenVFM` with an adapter (in place)."""
    vfm.blocks = nn.ModuleList(AdaptedBlock(b, bottleneck) for b in vfm.blocks)
