"""The output type every forecasting model of the project returns."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ModelOutput(NamedTuple):
    st: torch.Tensor  # (B, T_out, C, H, W) forecast of the series
    flow: torch.Tensor | None = None  # (B, T_out, C, H, W) forecast of the ST flow Δ_t X (variant `full` only)
