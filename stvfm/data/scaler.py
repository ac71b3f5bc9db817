"""Per-channel scaler fitted on the train split only, persisted as ``scaler.json``.

``standard``: ``z = (x - mean_c) / std_c`` (a channel with std 0 gets std 1).
``minmax``:   ``z = 2 (x - min_c) / (max_c - min_c) - 1`` (to [-1, 1], as UniST; a constant channel gets range 1).

Both are affine, so a *difference* (the ST flow) is scaled without the shift: ``scale_diff(d) = d / std_c`` or
``2 d / (max_c - min_c)``; ``inverse_diff`` undoes it. ``scaler.json`` also stores that divisor as ``scale_diff``. Arrays may be numpy or torch; the channel axis defaults to -3, the
``(..., C, H, W)`` layout of model tensors (pass ``channel_axis=-1`` for the ``(time, y, x, channel)`` grid layout).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.errors import ConfigError, DataError
from stvfm.io import write_json

KINDS = ("standard", "minmax")


@dataclass
class Scaler:
    kind: str
    shift: np.ndarray  # (C,) mean or min
    scale: np.ndarray  # (C,) std or (max - min) / 2
    offset: float = 0.0  # 0 for standard, 1 for minmax (z = (x - shift)/scale - offset)

    # ---------------------------------------------------------------- fit / persist
    @classmethod
    def fit(cls, x: np.ndarray, kind: str = "standard", channel_axis: int = -1) -> "Scaler":
        if kind not in KINDS:
            raise ConfigError(f"data.scaler: '{kind}' is not one of {', '.join(KINDS)}")
        x = np.moveaxis(np.asarray(x, dtype=np.float64), channel_axis, -1)
        flat = x.reshape(-1, x.shape[-1])
        if kind == "standard":
            mean, std = flat.mean(axis=0), flat.std(axis=0)
            std = np.where(std > 0, std, 1.0)
            return cls("standard", mean, std, 0.0)
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        rng = np.where(hi > lo, hi - lo, 1.0)
        return cls("minmax", lo, rng / 2.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``scale_diff`` is the per-channel divisor of a difference (the ST flow), for readers that do
        not use this class (it is derived, and ignored on load)."""
        if self.kind == "standard":
            d = {"kind": "standard", "mean": self.shift.tolist(), "std": self.scale.tolist()}
        else:
            d = {"kind": "minmax", "min": self.shift.tolist(), "max": (self.shift + 2 * self.scale).tolist()}
        d["scale_diff"] = self.scale.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaler":
        kind = d.get("kind")
        if kind == "standard":
            return cls("standard", np.asarray(d["mean"], float), np.asarray(d["std"], float), 0.0)
        if kind == "minmax":
            lo, hi = np.asarray(d["min"], float), np.asarray(d["max"], float)
            return cls("minmax", lo, np.where(hi > lo, hi - lo, 1.0) / 2.0, 1.0)
        raise DataError(f"scaler kind '{kind}' is not one of {', '.join(KINDS)}")

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Scaler":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"cannot read scaler ({e}); rerun the split stage", path=str(path)) from None

    @property
    def channels(self) -> int:
        return int(self.shift.shape[0])

    # ---------------------------------------------------------------- apply
    def _b(self, v: np.ndarray, x: Any, channel_axis: int):
        nd = x.ndim
        ax = channel_axis % nd
        shape = [1] * nd
        shape[ax] = -1
        if hasattr(x, "new_tensor"):  # torch
            return x.new_tensor(v.astype(np.float32)).reshape(shape)
        return v.astype(x.dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float64).reshape(shape)

    def transform(self, x, channel_axis: int = -3):
        return (x - self._b(self.shift, x, channel_axis)) / self._b(self.scale, x, channel_axis) - self.offset

    def inverse(self, z, channel_axis: int = -3):
        return (z + self.offset) * self._b(self.scale, z, channel_axis) + self._b(self.shift, z, channel_axis)

    def scale_diff(self, d, channel_axis: int = -3):
        """Scale a difference of raw values (the ST flow) into the scaled space: no shift."""
        return d / self._b(self.scale, d, channel_axis)

    def inverse_diff(self, dz, channel_axis: int = -3):
        return dz * self._b(self.scale, dz, channel_axis)
