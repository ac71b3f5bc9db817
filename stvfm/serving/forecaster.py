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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvfm.data.scaler import Scaler
from stvfm.data.timefeatures import window_time_ids
from stvfm.errors import DataError, StvfmError
from stvfm.io import atomic_path
from stvfm.serving.inputs import bad_input as _bad
from stvfm.serving.inputs import check_unix_seconds, parse_time, read_series, unix_seconds
from stvfm.serving.version import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    build_network,
    check_config,
    check_parts,
    is_local_version,
    read_config,
    read_weights_bytes,
    verify_digest,
)

# inputs further than this from the training data (in the scaler's units: standard deviations, or half the train
# range for minmax) are refused: the network's float32 arithmetic would turn them into inf/NaN, and no forecast of
# them means anything
MAX_SCALED = 1e4


class Cancelled(StvfmError):
    """The forecast passed its deadline and was stopped between two layers."""


class NonFiniteForecast(DataError):
    """The network produced NaN/inf for these inputs (the forecast is refused, never sent)."""


class _Deadline(threading.local):
    at: float | None = None


class Forecaster:
    def __init__(
        self,
        model: torch.nn.Module,
        scaler,
        *,
        history: int,
        horizon: int,
        grid: tuple[int, int],
        channels: int,
        interval_minutes: int,
        time_identity: bool = False,
        dataset: str = "",
        bf16: bool = False,
        config: dict[str, Any] | None = None,
    ):
        """``scaler``: the train-fitted :class:`stvfm.data.scaler.Scaler` (used through its methods only)."""
        self.model = model.eval()
        self.scaler = scaler
        self.history, self.horizon, self.grid = int(history), int(horizon), (int(grid[0]), int(grid[1]))
        self.channels, self.interval_minutes = int(channels), int(interval_minutes)
        self.time_identity, self.dataset, self.bf16 = bool(time_identity), str(dataset), bool(bf16)
        self.config = dict(config or {})
        self.device = torch.device("cpu")
        self._deadline = _Deadline()
        self._hooked = False

    def _stop_at_deadline(self) -> None:
        """Forward pre-hooks on every layer that raise :class:`Cancelled` once this thread's deadline has passed:
        a late forecast is stopped within one layer, not left running after its request gave up."""
        deadline = self._deadline

        def hook(module, args):
            at = deadline.at
            if at is not None and time.monotonic() > at:
                raise Cancelled("the forecast passed its deadline and was stopped")

        for m in self.model.modules():
            m.register_forward_pre_hook(hook)
        self._hooked = True

    def to(self, device: str | torch.device) -> Forecaster:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @classmethod
    def from_version(cls, config: dict[str, Any], state_dict: dict[str, Any], where: str = "model") -> Forecaster:
        check_parts(config, state_dict, where)  # config, scaler and tensors agree (shapes, dtype, finite)
        try:
            scaler = Scaler.from_dict(config["scaler"])
        except (KeyError, TypeError, ValueError, DataError) as e:
            raise _bad(f"model '{where}': config.json has no usable scaler ({e})") from None
        model = build_network(config, state_dict, where)
        return cls(
            model,
            scaler,
            history=config["history"],
            horizon=config["horizon"],
            grid=config["grid"],
            channels=config["channels"],
            interval_minutes=config["interval_minutes"],
            time_identity=bool(config.get("time_identity")),
            dataset=config.get("dataset", ""),
            bf16=bool(config["model_cfg"].get("bf16")),
            config=config,
        )

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
            raise _bad(
                f"grid {h}x{w} does not match the model's {self.grid[0]}x{self.grid[1]} (trained on '{self.dataset}')",
                where=where,
            )
        if c != self.channels:
            raise _bad(
                f"{c} channel(s) given, the model expects {self.channels} (trained on '{self.dataset}')", where=where
            )
        tail = flow[:, -(self.history + 1) :]
        if flow.dtype.kind == "f" and not np.isfinite(tail).all():
            bad = int((~np.isfinite(tail)).sum())
            raise _bad(
                f"{bad} NaN/inf value(s) in the last {tail.shape[1]} steps; fill or drop them first", where=where
            )
        neg = int((tail < 0).sum())
        if neg:
            raise _bad(
                f"{neg} negative value(s) in the last {tail.shape[1]} steps (flows are counts >= 0; "
                f"give the series on its original scale)",
                where=where,
            )
        z = np.abs(self.scaler.transform(tail.astype(np.float64), channel_axis=-1))
        far = int((z > MAX_SCALED).sum())
        if far:
            raise _bad(
                f"{far} value(s) in the last {tail.shape[1]} steps lie beyond {MAX_SCALED:g} training standard "
                f"deviations (largest {float(np.abs(tail).max()):.3g}); is the series on its original scale?",
                where=where,
            )
        if self.time_identity:
            if last_time is None:
                raise _bad(
                    "this model uses time identities: give the time of each window's last step "
                    "('last_time', unix seconds; for files an .npz 'start' + 'freq_minutes', the Zarr "
                    "time axis, or --last-time)",
                    where=where,
                )
            self.check_last_time(last_time, b, where)

    def check_last_time(self, last_time: Any, b: int, where: str | None = None) -> None:
        """``last_time``: (b,) whole unix seconds in 1900..2200, each on the model's interval grid."""
        lt = np.asarray(last_time)
        if lt.shape != (b,):
            raise _bad(f"'last_time' must have shape ({b},) (one per window), got {lt.shape}", where=where)
        if lt.dtype.kind not in "iuf":
            raise _bad(f"'last_time' must be unix seconds (integers), got dtype {lt.dtype}", where=where)
        if lt.dtype.kind == "f":
            if not np.isfinite(lt).all():
                raise _bad("'last_time' has NaN/inf values", where=where)
            if (lt != np.round(lt)).any():
                raise _bad("'last_time' must be whole unix seconds, got a fraction", where=where)
        for i in (int(np.argmin(lt)), int(np.argmax(lt))):
            check_unix_seconds(int(lt[i]), f"'last_time'[{i}]", where)
        step = 60 * self.interval_minutes
        off = lt.astype(np.int64) % 86400 % step
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise _bad(
                f"'last_time'[{i}] = {int(lt[i])} is not on the model's {self.interval_minutes}-minute grid "
                f"(seconds since midnight must be a multiple of {step})",
                where=where,
            )

    def time_ids(self, last_time: Any) -> torch.Tensor | None:
        if not self.time_identity:
            return None
        return torch.from_numpy(window_time_ids(last_time, self.interval_minutes, self.history, self.horizon))

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(
        self,
        flow: np.ndarray,
        last_time: Any = None,
        *,
        check: bool = True,
        where: str | None = None,
        deadline: float | None = None,
        max_batch: int | None = None,
    ) -> np.ndarray:
        """(B, T, H, W, C) original scale (+ last_time (B,) when the model uses time identities) ->
        (B, horizon, H, W, C) float32 original scale, all finite (else :class:`NonFiniteForecast`).

        ``deadline`` (a ``time.monotonic()`` instant): past it the forecast stops within one layer and raises
        :class:`Cancelled`. ``max_batch``: at most that many windows per forward pass (bounds the memory a call
        takes, whatever B is)."""
        b = len(flow)
        if max_batch and b > max_batch:
            lt = None if last_time is None else np.asarray(last_time)
            if check:
                self.check(flow, lt, where)
            return np.concatenate(
                [
                    self.predict(
                        flow[i : i + max_batch],
                        None if lt is None else lt[i : i + max_batch],
                        check=False,
                        deadline=deadline,
                    )
                    for i in range(0, b, max_batch)
                ]
            )
        if check:
            self.check(flow, last_time, where)
        if deadline is not None:
            if not self._hooked:
                self._stop_at_deadline()
            self._deadline.at = float(deadline)
        try:
            y = self._forward(flow, last_time)
        finally:
            self._deadline.at = None
        if not np.isfinite(y).all():
            n = int((~np.isfinite(y)).sum())
            raise NonFiniteForecast(f"the model produced {n} NaN/inf value(s) for these inputs; nothing is returned")
        return y

    def _forward(self, flow: np.ndarray, last_time: Any) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(flow)[:, -(self.history + 1) :], dtype=np.float32))
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


def load_version(folder: str | Path, where: str | None = None, expect: dict[str, str] | None = None):
    """:class:`Forecaster` from a local model-version folder, its digest checked (and compared with ``expect``, the
    digest the registry holds for it, when given)."""
    folder = Path(folder)
    where = where or str(folder)
    config = read_config(folder / CONFIG_FILE, where)
    check_config(config, where)  # the most telling line first (a NaN scaler is named as such, not as a digest)
    state = verify_digest(config, read_weights_bytes(folder / WEIGHTS_FILE, where), where, expect)
    return Forecaster.from_version(config, state, where=where)


def load_forecaster(source: str | Path):
    """A Forecaster from a local model-version folder or an MLflow model URI (tensors + JSON only)."""
    if is_local_version(source):
        return load_version(source)
    from stvfm.serving.registry import fetch_version, registered_digest  # MLflow: only for a model URI

    with tempfile.TemporaryDirectory(prefix="stvfm-model-") as tmp:
        folder = fetch_version(str(source), tmp)
        return load_version(folder, where=str(source), expect=registered_digest(str(source)))


def predict_file(uri: str, inp: str | Path, out: str | Path, last_time: str | None = None) -> dict[str, Any]:
    f = load_forecaster(uri)
    s = read_series(inp)
    where = str(inp)
    if s.interval_minutes is not None and s.interval_minutes != f.interval_minutes:
        raise _bad(
            f"the input has {s.interval_minutes}-minute steps, the model forecasts "
            f"{f.interval_minutes}-minute steps (trained on '{f.dataset}')",
            where=where,
        )
    lt = parse_time(last_time, "--last-time", where) if last_time is not None else s.last_time
    y = forecast(f, s.flow, None if lt is None else unix_seconds(lt, "the time of the last step", where), where=where)
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, forecast=y.astype(np.float32), history_steps=np.int64(s.flow.shape[0]))
    return {
        "out": str(out),
        "shape": list(y.shape),
        "model": str(uri),
        "dataset": f.dataset,
        "last_time": None if lt is None else str(lt),
    }
