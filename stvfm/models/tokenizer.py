"""Flow/ST tokenizer (§3.3 (1)): non-overlapping Ps×Ps patches per time step, each flattened to Ps²·C.

Grids that Ps does not divide are padded at the bottom/right by *replicating* the border cells (a patch on the edge
then sees plausible values rather than an artificial zero/mean step), and :meth:`PatchTokenizer.unpatchify` crops the
padding away again, so outputs always have the input's H×W and padded cells never reach the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stvfm.errors import ConfigError


def check_patch_size(grid: tuple[int, int], patch_size: int) -> None:
    h, w = grid
    if h < 1 or w < 1:
        raise ConfigError(f"grid {h}x{w}: both sides must be >= 1")
    if patch_size < 1 or patch_size > min(h, w):
        raise ConfigError(
            f"model.patch_size={patch_size} cannot tile the {h}x{w} grid: a patch must be 1..min(H, W)={min(h, w)} "
            f"cells wide (larger patches would be mostly padding); set model.patch_size to 1..{min(h, w)} "
            f"(the paper uses 2)"
        )


class PatchTokenizer(nn.Module):
    """(B, T, C, H, W) <-> (B, T, N_s, Ps²·C) with N_s = ceil(H/Ps)·ceil(W/Ps)."""

    def __init__(self, grid: tuple[int, int], channels: int, patch_size: int):
        super().__init__()
        check_patch_size(grid, patch_size)
        self.grid = (int(grid[0]), int(grid[1]))
        self.channels = int(channels)
        self.p = int(patch_size)
        self.hp = math.ceil(self.grid[0] / self.p)  # patches along H
        self.wp = math.ceil(self.grid[1] / self.p)
        self.pad_h = self.hp * self.p - self.grid[0]
        self.pad_w = self.wp * self.p - self.grid[1]

    @property
    def num_patches(self) -> int:
        return self.hp * self.wp

    @property
    def patch_dim(self) -> int:
        return self.p * self.p * self.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        x = x.reshape(b * t, c, h, w)
        if self.pad_h or self.pad_w:
            x = F.pad(x, (0, self.pad_w, 0, self.pad_h), mode="replicate")
        p = self.p
        x = x.reshape(b, t, c, self.hp, p, self.wp, p)
        x = x.permute(0, 1, 3, 5, 4, 6, 2)  # B, T, hp, wp, p, p, C
        return x.reshape(b, t, self.num_patches, self.patch_dim)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, _, _ = tokens.shape
        p, c = self.p, self.channels
        x = tokens.reshape(b, t, self.hp, self.wp, p, p, c)
        x = x.permute(0, 1, 6, 2, 4, 3, 5)  # B, T, C, hp, p, wp, p
        x = x.reshape(b, t, c, self.hp * p, self.wp * p)
        return x[..., : self.grid[0], : self.grid[1]]
