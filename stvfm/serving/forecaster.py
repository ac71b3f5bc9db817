"""Forecast the next ``horizon`` steps with a model version: original scale in, original scale out.

:class:`Forecaster` = the network rebuilt from the installed package + the train-fitted scaler (rebuilt from its
JSON) + what the version's config says (grid, channels, history/horizon, interval, whether it reads time identities).
It takes windows of the raw series, (B, T, H, W, C) with T >= history, and the time of each window's last step when
the model uses time identities. With at least ``history + 1`` steps the first input flow is the true difference;
with exactly ``history`` it is 0 (like the first step of a series). ``stvfm predict``, the MLflow pyfunc
(``mlflow models serve``) and the batch forecasts (``stvfm forecast``) all go through :meth:`Forecaster.predict`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvfm.data.scaler import Scaler
from stvfm.data.timefeatures import window_time_ids
from stvfm.errors import DataError
from stvfm.io import atomic_path
from stvfm.serving.inputs import bad_input as _bad
from stvfm.serving.inputs import parse_time, read_series, unix_seconds
from stvfm.serving.version import CONFIG_FILE, WEIGHTS_FILE, build_network, is_local_version, read_config, read_weights


class Forecaster:
    def __init__(self, model: torch.nn.Module, scaler, *, history: int, horizon: int, grid: tuple[int, int],
                 channels: int, interval_minutes: int, time_identity: bool = False, dataset: str = "",
                 bf16: bool = False, config: dict[str, Any] | None = None):
        """``scaler``: the train-fitted :class:`stvfm.data.scaler.Scaler` (used through its methods only)."""
        self.model = model.eval()
        self.scaler = scaler
        self.history, self.horizon, self.grid = int(history), int(horizon), (int(grid[0]), int(grid[1]))
        self.channels, self.interval_minutes = int(channels), int(interval_minutes)
        self.time_identity, self.dataset, self.bf16 = bool(time_identity), str(dataset), bool(bf16)
        self.config = dict(config or {})
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> "Forecaster":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @classmethod
    def from_version(cls, config: dict[str, Any], state_dict: dict[str, Any], where: str = "model") -> "Forecaster":
        try:
            scaler = Scaler.from_dict(config["scaler"])
        except (KeyError, TypeError, ValueError, DataError) as e:
            raise _bad(f"model '{where}': config.json has no usable scaler ({e})") from None
        model = build_network(config, state_dict, where)
        return cls(model, scaler, history=config["history"], horizon=config["horizon"], grid=config["grid"],
                   channels=config["channels"], interval_minutes=config["interval_minutes"],
                   time_identity=bool(config.get("time_identity")), dataset=config.get("dataset", ""),
                   bf16=bool(config["model_cfg"].get("bf16")), config=config)

    # ------------------------------------------------------------------ checks
    def check(self, flow: np.ndarray, last_time: Any = None, where: str | None = None) -> None:
        """Refuse a batch of windows (B, T, H, W, C) the model cannot score, with one line naming what is wrong."""
        flow = np.asarray(flow)
        if flow.dtype.kind not in "iuf":
            raise _bad(f"'flow' must hold numbers, got dtype {flow.dtype}", where=where)
        if flow.ndim != 5:
            raise _bad(f"'flow' must be (B, T, H, W, C), got shape {flow.shape}", where=where)
        b, t, h, w, c = flow.shape
        if b < 1:
            raise _bad("no window given (batch size 0)", where=where)
        if t < self.history:
            raise _bad(f"needs at least {self.history} time steps to forecast, got {t}", where=where)
        if (h, w) != self.grid:
            raise _bad(f"grid {h}x{w} does not match the model's {self.grid[0]}x{self.grid[1]} "
                       f"(trained on '{self.dataset}')", where=where)
        if c != self.channels:
            raise _bad(f"{c} channel(s) given, the model expects {self.channels} (trained on '{self.dataset}')",
                       where=where)
        tail = flow[:, -(self.history + 1):]
        if flow.dtype.kind == "f" and not np.isfinite(tail).all():
            bad = int((~np.isfinite(tail)).sum())
            raise _bad(f"{bad} NaN/inf value(s) in the last {tail.shape[1]} steps; fill or drop them first",
                       where=where)
        neg = int((tail < 0).sum())
        if neg:
            raise _bad(f"{neg} negative value(s) in the last {tail.shape[1]} steps (flows are counts >= 0; "
                       f"give the series on its original scale)", where=where)
        if self.time_identity:
            if last_time is None:
                raise _bad("this model uses time identities: give the time of each window's last step "
                           "('last_time', unix seconds; for files an .npz 'start' + 'freq_minutes', the Zarr "
                           "time axis, or --last-time)", where=where)
            lt = np.asarray(last_time)
            if lt.shape != (b,):
                raise _bad(f"'last_time' must have shape ({b},) (one per window), got {lt.shape}", where=where)
            if lt.dtype.kind in "iuf" and not np.isfinite(lt.astype(np.float64)).all():
                raise _bad("'last_time' has NaN/inf values", where=where)

    def time_ids(self, last_time: Any) -> torch.Tensor | None:
        if not self.time_identity:
            return None
        return torch.from_numpy(window_time_ids(last_time, self.interval_minutes, self.history, self.horizon))

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(self, flow: np.ndarray, last_time: Any = None, *, check: bool = True,
                where: str | None = None) -> np.ndarray:
        """(B, T, H, W, C) original scale (+ last_time (B,) when the model uses time identities) ->
        (B, horizon, H, W, C) float32 original scale."""
        if check:
            self.check(flow, last_time, where)
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(flow)[:, -(self.history + 1):], dtype=np.float32))
        x = x.permute(0, 1, 4, 2, 3).to(self.device)  # (B, L, C, H, W)
        if x.shape[1] > self.history:
            d = x[:, 1:] - x[:, :-1]
            x = x[:, 1:]
        else:
            d = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)
        s = self.scaler.transform(x, channel_axis=-3).float()
        f = self.scaler.scale_diff(d, channel_axis=-3).float()
        tid = self.time_ids(last_time)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(s, f, time_ids=None if tid is None else tid.to(self.device))
        y = self.scaler.inverse(out.st.float(), channel_axis=-3)
        return y.permute(0, 1, 3, 4, 2).contiguous().cpu().numpy().astype(np.float32, copy=False)


def forecast(f: Forecaster, arr: np.ndarray, last_time: Any = None, where: str | None = None) -> np.ndarray:
    """(T, H, W, C) -> next ``horizon`` steps (horizon, H, W, C) on the original scale."""
    lt = None if last_time is None else np.atleast_1d(np.asarray(last_time))
    return f.predict(arr[None], lt, where=where)[0]


def check_series(arr: np.ndarray, f: Forecaster, path: str, last_time: Any = None) -> None:
    """Check one series (T, H, W, C) for ``f`` (one-line :class:`DataError` naming ``path``)."""
    f.check(np.asarray(arr)[None], None if last_time is None else np.atleast_1d(last_time), where=path)


def load_version(folder: str | Path, where: str | None = None):
    """:class:`Forecaster` from a local model-version folder."""
    folder = Path(folder)
    where = where or str(folder)
    config = read_config(folder / CONFIG_FILE, where)
    return Forecaster.from_version(config, read_weights(folder / WEIGHTS_FILE, where), where=where)


def load_forecaster(source: str | Path):
    """A Forecaster from a local model-version folder or an MLflow model URI (tensors + JSON only)."""
    if is_local_version(source):
        return load_version(source)
    from stvfm.serving.registry import fetch_version  # MLflow: only for a model URI

    with tempfile.TemporaryDirectory(prefix="stvfm-model-") as tmp:
        return load_version(fetch_version(str(source), tmp), where=str(source))


def predict_file(uri: str, inp: str | Path, out: str | Path, last_time: str | None = None) -> dict[str, Any]:
    f = load_forecaster(uri)
    s = read_series(inp)
    where = str(inp)
    if s.interval_minutes is not None and s.interval_minutes != f.interval_minutes:
        raise _bad(f"the input has {s.interval_minutes}-minute steps, the model forecasts "
                   f"{f.interval_minutes}-minute steps (trained on '{f.dataset}')", where=where)
    lt = parse_time(last_time, "--last-time", where) if last_time is not None else s.last_time
    y = forecast(f, s.flow, None if lt is None else unix_seconds(lt), where=where)
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, forecast=y.astype(np.float32), history_steps=np.int64(s.flow.shape[0]))
    return {"out": str(out), "shape": list(y.shape), "model": str(uri), "dataset": f.dataset,
            "last_time": None if lt is None else str(lt)}
