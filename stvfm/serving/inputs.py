"""Input series for a model version: the raw series of an ``.npz`` or a ``.zarr`` store, and the time arguments.

Shared by ``stvfm predict`` (:func:`stvfm.serving.forecaster.predict_file`) and the MLflow pyfunc; every problem is one
:class:`~stvfm.errors.DataError` line naming the file.
"""

from __future__ import annotations

import contextlib
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.errors import DataError


def bad_input(msg: str, where: str | None = None, path: str | None = None) -> DataError:
    """A one-line input error, naming the file when there is one (``where``/``path``)."""
    p = path or where
    return DataError(msg, path=p) if p else DataError(msg)


@dataclass
class Series:
    flow: np.ndarray  # (T, H, W, C) float32, original scale
    last_time: np.datetime64 | None  # time of the last step (the series' own clock), when the file has one
    interval_minutes: int | None  # minutes per step, when the file says


_NPZ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


# the times a model version accepts: a sane calendar range, checked before any conversion can overflow
TIME_MIN, TIME_MAX = np.datetime64("1900-01-01T00:00", "s"), np.datetime64("2200-01-01T00:00", "s")
UNIX_MIN, UNIX_MAX = int(TIME_MIN.astype(np.int64)), int(TIME_MAX.astype(np.int64))
MAX_FREQ_MINUTES = 366 * 24 * 60


def check_unix_seconds(v: int, what: str, path: str | None = None) -> int:
    """``v`` (an int) if it lies in 1900-01-01..2200-01-01, else one line naming ``what``."""
    if not UNIX_MIN <= v <= UNIX_MAX:
        shown = str(v) if len(str(v)) <= 24 else str(v)[:21] + "..."
        raise bad_input(
            f"{what} {shown} is outside {TIME_MIN}..{TIME_MAX} (unix seconds {UNIX_MIN}..{UNIX_MAX})", path=path
        )
    return int(v)


def parse_time(value: Any, what: str, path: str) -> np.datetime64:
    """An ISO date/time string or whole unix seconds (a number or its text) in 1900..2200 -> datetime64[s]; anything
    else (a fraction of a second, a time out of range, not a time) is one clear error."""
    v = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
    shown = repr(v) if len(repr(v)) < 60 else repr(v)[:57] + "..."
    try:
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str):
            text = v.strip()
            try:  # unix seconds given as text (numpy would read "1704495600" as a year)
                v = int(text)
            except ValueError:
                with contextlib.suppress(ValueError):
                    v = float(text)
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            if isinstance(v, (float, np.floating)):
                if not np.isfinite(v) or not float(v).is_integer():
                    raise bad_input(f"{what} must be whole unix seconds, got {shown}", path=path)
                if not UNIX_MIN <= float(v) <= UNIX_MAX:  # before int(): no overflow on the way
                    raise bad_input(
                        f"{what} {shown} is outside {TIME_MIN}..{TIME_MAX} (unix seconds {UNIX_MIN}..{UNIX_MAX})",
                        path=path,
                    )
            return np.datetime64(check_unix_seconds(int(v), what, path), "s")
        if not isinstance(v, str) or not v.strip():
            raise ValueError(v)
        t = np.datetime64(v.strip(), "s")
        if np.isnat(t):
            raise ValueError(v)
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError):
        raise bad_input(
            f"{what} is not a date/time: {shown} (give an ISO time like 2024-01-31T08:30 or unix seconds)", path=path
        ) from None
    if not TIME_MIN <= t <= TIME_MAX:
        raise bad_input(f"{what} {shown} is outside {TIME_MIN}..{TIME_MAX}", path=path)
    return t


def _freq(value: Any, path: str) -> int:
    a = np.asarray(value)
    if a.ndim != 0 or a.dtype.kind not in "iuf" or not np.isfinite(a) or a <= 0 or int(a) != a or a > MAX_FREQ_MINUTES:
        raise bad_input(
            f"'freq_minutes' must be a positive integer scalar (at most a year), got {value!r}"[:200], path=path
        )
    return int(a)


def _read_npz(path: Path) -> Series:
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            if "flow" not in files:
                raise bad_input(
                    f"no array 'flow' (T, H, W, C) in the .npz; it has {', '.join(files) or 'none'}", where=where
                )
            arr = np.asarray(z["flow"])
            start = np.asarray(z["start"]) if "start" in files else None
            freq = np.asarray(z["freq_minutes"]) if "freq_minutes" in files else None
    except DataError:
        raise
    except _NPZ_ERRORS as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise bad_input(f"cannot read .npz (empty, truncated or not an .npz: {msg})", where=where) from None
    interval = _freq(freq, where) if freq is not None else None
    last = None
    if start is not None:
        t0 = parse_time(start, "'start'", where)
        if interval is None:
            raise bad_input("'start' is given without 'freq_minutes' (minutes per step)", where=where)
        n = arr.shape[0] if arr.ndim >= 1 else 0
        last = t0 + np.timedelta64(max(n - 1, 0) * interval, "m")
    return Series(arr, last, interval)


def _read_zarr(path: Path) -> Series:
    import xarray as xr

    where = str(path)
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except Exception as e:  # zarr raises many kinds
        raise bad_input(
            f"cannot open as a zarr store: {str(e).splitlines()[0][:200] if str(e) else e!r}", where=where
        ) from None
    if "flow" not in ds:
        raise bad_input(
            f"no variable 'flow' in the zarr store; it has {', '.join(ds.data_vars) or 'none'}", where=where
        )
    da = ds["flow"]
    if set(da.dims) != {"time", "y", "x", "channel"}:
        raise bad_input(f"'flow' must have dims (time, y, x, channel), got {da.dims}", where=where)
    try:
        arr = da.transpose("time", "y", "x", "channel").values
    except Exception as e:  # a corrupt or missing chunk surfaces here (codec errors of many kinds)
        raise bad_input(
            f"cannot read 'flow' from the zarr store (corrupt chunk?): "
            f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
            where=where,
        ) from None
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
        raise bad_input("input file does not exist", path=str(path))
    if path.suffix == ".npz":
        s = _read_npz(path)
    elif path.suffix == ".zarr" or path.is_dir():
        s = _read_zarr(path)
    else:
        raise bad_input("unsupported input; give an .npz with 'flow' (T, H, W, C) or a .zarr store", path=str(path))
    arr = s.flow
    if arr.dtype.kind not in "iuf":
        raise bad_input(f"'flow' must hold numbers, got dtype {arr.dtype}", path=str(path))
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise bad_input(f"'flow' must be (T, H, W, C), got shape {arr.shape}", path=str(path))
    s.flow = arr.astype(np.float32)
    return s


def unix_seconds(t: np.datetime64, what: str = "the time of the last step", path: str | None = None) -> int:
    """Unix seconds of ``t``, refused (one line) outside 1900..2200 (a Zarr time axis can hold any datetime64)."""
    return check_unix_seconds(int(np.datetime64(t, "s").astype(np.int64)), what, path)
