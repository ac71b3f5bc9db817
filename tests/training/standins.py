"""Test-only stand-ins: a tiny model with the ST-VFM call signature and an in-memory window dataset."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class Out:
    st: torch.Tensor
    flow: torch.Tensor | None


class TinyModel(nn.Module):
    """model(x, x_flow) -> Out(st, flow), (B, T, C, H, W) in and out; per-pixel linear map over time."""

    def __init__(self, t_in=6, t_out=6, channels=2):
        super().__init__()
        self.st = nn.Linear(2 * t_in * channels, t_out * channels)
        self.flow = nn.Linear(2 * t_in * channels, t_out * channels)
        self.drop = nn.Dropout(0.1)
        self.t_out, self.c = t_out, channels

    def forward(self, x, x_flow, time_ids=None):
        b, t, c, h, w = x.shape
        z = torch.cat([x, x_flow], 1).reshape(b, 2 * t * c, h, w).permute(0, 2, 3, 1)
        z = self.drop(z)
        st = self.st(z).permute(0, 3, 1, 2).reshape(b, self.t_out, c, h, w)
        fl = self.flow(z).permute(0, 3, 1, 2).reshape(b, self.t_out, c, h, w)
        return Out(st, fl)


def tiny_loss(out, y, y_flow, lam=0.5):
    st = torch.mean((out.st - y) ** 2)
    fl = torch.mean((out.flow - y_flow) ** 2)
    return st + lam * fl, {"st": float(st.detach()), "flow": float(fl.detach())}


class SineWindows(Dataset):
    """Scaled windows of a noisy daily sine over a (C, H, W) grid."""

    def __init__(self, n=40, c=2, h=4, w=3, seed=0, offset=0):
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(n + 13 + offset, dtype=torch.float32)
        phase = torch.rand(c, h, w, generator=g) * 6.28
        series = torch.sin(t[:, None, None, None] * 0.5 + phase) + 0.05 * torch.randn(len(t), c, h, w, generator=g)
        series = series[offset:]
        self.series = series
        self.flow = torch.cat([torch.zeros_like(series[:1]), series[1:] - series[:-1]])
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        s, f = self.series, self.flow
        return {"x": s[i : i + 6], "x_flow": f[i : i + 6], "y": s[i + 6 : i + 12], "y_flow": f[i + 6 : i + 12], "t0": i}
