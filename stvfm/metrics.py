"""MAE and RMSE (appendix Eqs. 4-5) over all spatio-temporal points, in numpy and torch.

Both implementations reduce in float64 so they agree to rounding. ``per_step`` splits the error by forecast step
(axis 1 of ``(B, T, C, H, W)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def mae_np(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Eq. 4: mean |Y - Ŷ| over every point."""
    return float(np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(y_hat, np.float64))))


def rmse_np(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Eq. 5: sqrt(mean (Y - Ŷ)²) over every point."""
    d = np.asarray(y, np.float64) - np.asarray(y_hat, np.float64)
    return float(np.sqrt(np.mean(d * d)))


def mae_torch(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    return float((y.double() - y_hat.double()).abs().mean())


def rmse_torch(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    return float(((y.double() - y_hat.double()) ** 2).mean().sqrt())


class ErrorAccumulator:
    """Streaming sums for MAE/RMSE over batches, overall and per step (axis 1). Sums can be all-reduced across
    data-parallel workers (``as_tensor``/``from_tensor``) so every rank ends with the same metrics."""

    def __init__(self, steps: int):
        self.steps = steps
        self.abs = np.zeros(steps, np.float64)
        self.sq = np.zeros(steps, np.float64)
        self.count = np.zeros(steps, np.float64)

    def update(self, y: torch.Tensor, y_hat: torch.Tensor) -> None:
        d = y.detach().double() - y_hat.detach().double()
        dims = [i for i in range(d.dim()) if i != 1]
        self.abs += d.abs().sum(dim=dims).cpu().numpy()
        self.sq += (d * d).sum(dim=dims).cpu().numpy()
        self.count += d[:, 0].numel()

    def as_tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([self.abs, self.sq, self.count]))

    def load_tensor(self, t: torch.Tensor) -> None:
        a = t.cpu().double().numpy()
        s = self.steps
        self.abs, self.sq, self.count = a[:s].copy(), a[s : 2 * s].copy(), a[2 * s :].copy()

    @property
    def mae(self) -> float:
        n = self.count.sum()
        return float(self.abs.sum() / n) if n else math.nan

    @property
    def rmse(self) -> float:
        n = self.count.sum()
        return float(math.sqrt(self.sq.sum() / n)) if n else math.nan

    def per_step(self) -> list[dict[str, float]]:
        return [
            {
                "step": i + 1,
                "mae": float(self.abs[i] / self.count[i]) if self.count[i] else math.nan,
                "rmse": float(math.sqrt(self.sq[i] / self.count[i])) if self.count[i] else math.nan,
            }
            for i in range(self.steps)
        ]


class ChannelErrors:
    """MAE/RMSE per channel (axis ``channel_axis``, -3 of ``(B, T, C, H, W)``): the report's inflow/outflow split."""

    def __init__(self, channel_axis: int = -3):
        self.axis = channel_axis
        self.abs = self.sq = None
        self.n = 0.0

    def update(self, y: torch.Tensor, y_hat: torch.Tensor) -> None:
        d = (y.detach().double() - y_hat.detach().double()).movedim(self.axis, -1)
        d = d.reshape(-1, d.shape[-1])
        a, s = d.abs().sum(0).cpu().numpy(), (d * d).sum(0).cpu().numpy()
        if self.abs is None:
            self.abs, self.sq = np.zeros_like(a), np.zeros_like(s)
        self.abs += a
        self.sq += s
        self.n += d.shape[0]

    def result(self, names=(), factor: float = 1.0) -> list[dict]:
        if self.abs is None or not self.n:
            return []
        return [
            {
                "channel": c,
                "name": names[c] if c < len(names) else str(c),
                "mae": float(a / self.n) * factor,
                "rmse": float(math.sqrt(s / self.n)) * factor,
            }
            for c, (a, s) in enumerate(zip(self.abs, self.sq, strict=True))
        ]
