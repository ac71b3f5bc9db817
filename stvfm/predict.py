"""Forecast the next ``horizon`` steps with a model version: original scale in, original scale out.

:class:`Forecaster` = the network rebuilt from the installed package + the train-fitted scaler (rebuilt from its
JSON) + what the version's config says (grid, channels, history/horizon, interval, whether it reads time identities).
It takes windows of the raw series, (B, T, H, W, C) with T >= history, and the time of each window's last step when
the model uses time identities. With at least ``history + 1`` steps the first input flow is the true difference;
with exactly ``history`` it is 0 (like the first step of a series). ``stvfm predict``, the MLflow pyfunc
(``mlflow models serve``) and the batch forecasts (``stvfm forecast``) all go through :meth:`Forecaster.predict`.
"""
from __future__ import annotations

import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvfm.errors import DataError
from stvfm.io import atomic_path


def _bad(msg: str, where: str | None = None, path: str | None = None) -> DataError:
    """A one-line input error, naming the file when there is one (``where``/``path``)."""
    p = path or where
    return DataError(msg, path=p) if p else DataError(msg)


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
        from stvfm.data.scaler import Scaler
        from stvfm.model_version import build_network

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
        from stvfm.data.timefeatures import window_time_ids

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


# ---------------------------------------------------------------------- files
@dataclass
class Series:
    flow: np.ndarray  # (T, H, W, C) float32, original scale
    last_time: np.datetime64 | None  # time of the last step (the series' own clock), when the file has one
    interval_minutes: int | None  # minutes per step, when the file says


_NPZ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


def parse_time(value: Any, what: str, path: str) -> np.datetime64:
    """An ISO date/time string or unix seconds -> datetime64[s]; anything else is one clear error."""
    v = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
    try:
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            if not np.isfinite(v):
                raise ValueError(v)
            return np.datetime64(int(round(float(v))), "s")
        if isinstance(v, bytes):
            v = v.decode()
        if not isinstance(v, str) or not v.strip():
            raise ValueError(v)
        try:  # unix seconds given as text (numpy would read "1704495600" as a year)
            return parse_time(float(v), what, path)
        except ValueError:
            pass
        t = np.datetime64(v.strip(), "s")
        if np.isnat(t):
            raise ValueError(v)
        return t
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
        shown = repr(v) if len(repr(v)) < 60 else repr(v)[:57] + "..."
        raise _bad(f"{what} is not a date/time: {shown} (give an ISO time like 2024-01-31T08:30 "
                   f"or unix seconds)", path=path) from None


def _freq(value: Any, path: str) -> int:
    a = np.asarray(value)
    if a.ndim != 0 or a.dtype.kind not in "iuf" or not np.isfinite(a) or a <= 0 or int(a) != a:
        raise _bad(f"'freq_minutes' must be a positive integer scalar, got {value!r}", path=path)
    return int(a)


def _read_npz(path: Path) -> Series:
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            if "flow" not in files:
                raise _bad(f"no array 'flow' (T, H, W, C) in the .npz; it has {', '.join(files) or 'none'}",
                           where=where)
            arr = np.asarray(z["flow"])
            start = np.asarray(z["start"]) if "start" in files else None
            freq = np.asarray(z["freq_minutes"]) if "freq_minutes" in files else None
    except DataError:
        raise
    except _NPZ_ERRORS as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise _bad(f"cannot read .npz (empty, truncated or not an .npz: {msg})", where=where) from None
    interval = _freq(freq, where) if freq is not None else None
    last = None
    if start is not None:
        t0 = parse_time(start, "'start'", where)
        if interval is None:
            raise _bad("'start' is given without 'freq_minutes' (minutes per step)", where=where)
        n = arr.shape[0] if arr.ndim >= 1 else 0
        last = t0 + np.timedelta64(max(n - 1, 0) * interval, "m")
    return Series(arr, last, interval)


def _read_zarr(path: Path) -> Series:
    import xarray as xr

    where = str(path)
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except Exception as e:  # zarr raises many kinds
        raise _bad(f"cannot open as a zarr store: {str(e).splitlines()[0][:200] if str(e) else e!r}",
                   where=where) from None
    if "flow" not in ds:
        raise _bad(f"no variable 'flow' in the zarr store; it has {', '.join(ds.data_vars) or 'none'}",
                   where=where)
    da = ds["flow"]
    if set(da.dims) != {"time", "y", "x", "channel"}:
        raise _bad(f"'flow' must have dims (time, y, x, channel), got {da.dims}", where=where)
    try:
        arr = da.transpose("time", "y", "x", "channel").values
    except Exception as e:  # a corrupt or missing chunk surfaces here (codec errors of many kinds)
        raise _bad(f"cannot read 'flow' from the zarr store (corrupt chunk?): "
                   f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}", where=where) from None
    last = interval = None
    if "time" in ds.coords and ds.sizes.get("time", 0) > 0:
        times = ds["time"].values
        if np.issubdtype(times.dtype, np.datetime64):
            last = times[-1].astype("datetime64[s]")
            if "interval_minutes" in ds.attrs:
                interval = _freq(ds.attrs["interval_minutes"], where)
            elif len(times) > 1:
                interval = int((times[1] - times[0]) / np.timedelta64(1, "m"))
    return Series(arr, last, interval)


def read_series(path: str | Path) -> Series:
    """The raw series of an .npz (``flow`` (T, H, W, C) + optional ``start``/``freq_minutes``) or a .zarr store
    (var ``flow``: time, y, x, channel)."""
    path = Path(path)
    if not path.exists():
        raise _bad("input file does not exist", path=str(path))
    if path.suffix == ".npz":
        s = _read_npz(path)
    elif path.suffix == ".zarr" or path.is_dir():
        s = _read_zarr(path)
    else:
        raise _bad("unsupported input; give an .npz with 'flow' (T, H, W, C) or a .zarr store", path=str(path))
    arr = s.flow
    if arr.dtype.kind not in "iuf":
        raise _bad(f"'flow' must hold numbers, got dtype {arr.dtype}", path=str(path))
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise _bad(f"'flow' must be (T, H, W, C), got shape {arr.shape}", path=str(path))
    s.flow = arr.astype(np.float32)
    return s


def forecast(f: Forecaster, arr: np.ndarray, last_time: Any = None, where: str | None = None) -> np.ndarray:
    """(T, H, W, C) -> next ``horizon`` steps (horizon, H, W, C) on the original scale."""
    lt = None if last_time is None else np.atleast_1d(np.asarray(last_time))
    return f.predict(arr[None], lt, where=where)[0]


def check_series(arr: np.ndarray, f: Forecaster, path: str, last_time: Any = None) -> None:
    """Check one series (T, H, W, C) for ``f`` (one-line :class:`DataError` naming ``path``)."""
    f.check(np.asarray(arr)[None], None if last_time is None else np.atleast_1d(last_time), where=path)


def unix_seconds(t: np.datetime64) -> int:
    return int(np.datetime64(t, "s").astype(np.int64))


def predict_file(uri: str, inp: str | Path, out: str | Path, last_time: str | None = None) -> dict[str, Any]:
    from stvfm.model_version import load_forecaster

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
