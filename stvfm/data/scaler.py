"""Scaler fitted on the train split only, persisted as ``scaler.json`` (JSON, never pickle).

``standard``: ``z = (x - mean_c) / std_c``, one mean/std per channel (a channel with std 0 gets std 1).
``minmax``:   ``z = 2 (x - min_c) / (max_c - min_c) - 1`` per channel (to [-1, 1], as UniST; a constant channel gets
              range 1).
``per_cell``: ``z = (x - mean_{c,y,x}) / std_{c,y,x}``, one z-score per grid cell and channel (per series, as BasicTS's
              STID recipe); a cell whose train values are constant (e.g. always 0) gets std 1, so it never blows up.

All are affine, so a *difference* (the ST flow) is scaled without the shift: ``scale_diff(d) = d / std`` or
``2 d / (max - min)``; ``inverse_diff`` undoes it. ``scaler.json`` also stores that divisor as ``scale_diff``.
Arrays may be numpy or torch; the channel axis defaults to -3, the ``(..., C, H, W)`` layout of model tensors (pass
``channel_axis=-1`` for the ``(time, y, x, channel)`` grid layout). A ``per_cell`` scaler holds ``(C, H, W)`` arrays and
needs the grid axes next to the channel axis: ``(..., C, H, W)`` (channel_axis -3) or ``(..., H, W, C)`` (-1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.errors import ConfigError, DataError
from stvfm.io import write_json

KINDS = ("standard", "minmax", "per_cell")


@dataclass
class Scaler:
    kind: str
    shift: np.ndarray  # mean or min: (C,) per channel, (C, H, W) for per_cell
    scale: np.ndarray  # std or (max - min) / 2, same shape as shift
    offset: float = 0.0  # 0 for standard/per_cell, 1 for minmax (z = (x - shift)/scale - offset)

    # ---------------------------------------------------------------- fit / persist
    @classmethod
    def fit(cls, x: np.ndarray, kind: str = "standard", channel_axis: int = -1) -> Scaler:
        """Fit on ``x`` (the train split); for ``per_cell`` ``x`` is ``(time, y, x, channel)`` (channel_axis -1) or
        ``(time, channel, y, x)`` (channel_axis -3 / 1)."""
        if kind not in KINDS:
            raise ConfigError(f"data.scaler: '{kind}' is not one of {', '.join(KINDS)}")
        x = np.asarray(x, dtype=np.float64)
        if kind == "per_cell":
            if x.ndim != 4 or channel_axis % 4 not in (1, 3):
                raise ValueError(
                    f"per_cell scaler: expected (time, y, x, channel) or (time, channel, y, x), "
                    f"got shape {x.shape} with channel_axis {channel_axis}"
                )
            if channel_axis % 4 == 3:
                x = x.transpose(0, 3, 1, 2)  # (T, C, H, W)
            mean, std = x.mean(axis=0), x.std(axis=0)
            return cls("per_cell", mean, np.where(std > 0, std, 1.0), 0.0)
        x = np.moveaxis(x, channel_axis, -1)
        flat = x.reshape(-1, x.shape[-1])
        if kind == "standard":
            mean, std = flat.mean(axis=0), flat.std(axis=0)
            std = np.where(std > 0, std, 1.0)
            return cls("standard", mean, std, 0.0)
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        rng = np.where(hi > lo, hi - lo, 1.0)
        return cls("minmax", lo, rng / 2.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``scale_diff`` is the divisor of a difference (the ST flow), per channel or per cell, for
        readers that do not use this class (it is derived, and ignored on load)."""
        if self.kind in ("standard", "per_cell"):
            d = {"kind": self.kind, "mean": self.shift.tolist(), "std": self.scale.tolist()}
        else:
            d = {"kind": "minmax", "min": self.shift.tolist(), "max": (self.shift + 2 * self.scale).tolist()}
        d["scale_diff"] = self.scale.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        kind = d.get("kind")
        if kind in ("standard", "per_cell"):
            mean, std = np.asarray(d["mean"], float), np.asarray(d["std"], float)
            want = 3 if kind == "per_cell" else 1
            if mean.ndim != want or mean.shape != std.shape or not (std > 0).all():
                raise DataError(
                    f"{kind} scaler: mean/std must be {want}-d arrays of one shape with std > 0, "
                    f"got shapes {mean.shape} / {std.shape}"
                )
            return cls(kind, mean, std, 0.0)
        if kind == "minmax":
            lo, hi = np.asarray(d["min"], float), np.asarray(d["max"], float)
            return cls("minmax", lo, np.where(hi > lo, hi - lo, 1.0) / 2.0, 1.0)
        raise DataError(f"scaler kind '{kind}' is not one of {', '.join(KINDS)}")

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Scaler:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"cannot read scaler ({e}); rerun the split stage", path=str(path)) from None
        except DataError as e:
            raise DataError(f"{e.args[0] if e.args else e}; rerun the split stage", path=str(path)) from None

    @property
    def channels(self) -> int:
        return int(self.shift.shape[0])

    @property
    def per_cell(self) -> bool:
        return self.kind == "per_cell"

    # ---------------------------------------------------------------- apply
    def broadcastable(self, ndim: int, channel_axis: int = -3) -> tuple[np.ndarray, np.ndarray]:
        """``(shift, scale)`` as float arrays shaped to broadcast against an ``ndim``-d array whose channel axis is
        ``channel_axis`` (e.g. ``(1, 1, C, 1, 1)`` or, per cell, ``(1, 1, C, H, W)`` for (B, T, C, H, W))."""
        return self._shape(self.shift, ndim, channel_axis), self._shape(self.scale, ndim, channel_axis)

    def _shape(self, v: np.ndarray, nd: int, channel_axis: int) -> np.ndarray:
        ax = channel_axis % nd
        if self.kind != "per_cell":
            shape = [1] * nd
            shape[ax] = -1
            return v.reshape(shape)
        if ax == nd - 3:  # (..., C, H, W)
            return v.reshape((1,) * (nd - 3) + v.shape)
        if ax == nd - 1 and nd >= 3:  # (..., H, W, C)
            return v.transpose(1, 2, 0).reshape((1,) * (nd - 3) + (v.shape[1], v.shape[2], v.shape[0]))
        raise ValueError(
            f"per_cell scaler needs (..., C, H, W) or (..., H, W, C); got {nd}-d input with channel axis {channel_axis}"
        )

    def _b(self, v: np.ndarray, x: Any, channel_axis: int):
        a = self._shape(v, x.ndim, channel_axis)
        if hasattr(x, "new_tensor"):  # torch
            return x.new_tensor(a.astype(np.float32))
        return a.astype(x.dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float64)

    def transform(self, x, channel_axis: int = -3):
        return (x - self._b(self.shift, x, channel_axis)) / self._b(self.scale, x, channel_axis) - self.offset

    def inverse(self, z, channel_axis: int = -3):
        return (z + self.offset) * self._b(self.scale, z, channel_axis) + self._b(self.shift, z, channel_axis)

    def scale_diff(self, d, channel_axis: int = -3):
        """Scale a difference of raw values (the ST flow) into the scaled space: no shift."""
        return d / self._b(self.scale, d, channel_axis)

    def inverse_diff(self, dz, channel_axis: int = -3):
        return dz * self._b(self.scale, dz, channel_axis)
