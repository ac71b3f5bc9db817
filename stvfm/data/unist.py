"""UniST's published files -> the canonical series: the one reader of the format the paper's ten datasets come in.

UniST (Yuan et al., KDD 2024; github.com/tsinghua-fib-lab/UniST) publishes each dataset as ``<Name>_short.json``,
read by its ``src/DataLoader.py``::

    {"X_train": [X, X_period], "X_val": [X, X_period], "X_test": [X, X_period],
     "timestamps": {"train": S, "val": S, "test": S}}

``X``         (N, T, H, W): N sliding windows of T = his_len + pred_len = 12 steps (6 in + 6 out), **one channel**
              (the loader adds the channel axis itself: ``torch.tensor(X).unsqueeze(1)``), stride 1 between the
              windows of a split. JSON floats (``4.000000000000001``: counts after a float round trip).
``X_period``  (N, T, P, H, W): for every step, the values P days earlier (UniST's periodic prompt; the loader permutes
              it to (N, P, T, H, W)). Redundant for a series reader: checked for shape, not kept.
``S``         either integer step indices (N, T) -- Crowd, Cellular: UniST maps index ``i`` to weekday
              ``((i % 336) // 48 + 2) % 7`` (Monday = 0) and half-hour slot ``i % 48``, so index 0 is a Wednesday
              00:00 -- or (weekday, slot) pairs (N, T, 2), Monday = 0, for every other file.

What the file decides (and the dataset table only informs):

* **interval** -- index stamps: 30 minutes (UniST's 48-slot convention). Pairs: the slots a day ``S`` come from the
  file's own day boundaries (the slot before a weekday change + the step), the step ``d`` (in slots) from
  consecutive stamps, and the interval is ``d * 1440 / S`` minutes (slots 0..47 advancing by 1: 30 min; by 2: 60 min;
  slots 0..23: 60 min).
* **grid and channels** -- from ``X``: (H, W) and one channel.
* **placement** -- every window sits where its stamps say (index stamps: exactly; pairs: relative to the previous
  window, modulo a week); repeated placements of a step must agree exactly, and every step between the first and the
  last must be covered. The splits are joined in the order train, val, test: overlapping (a window list cut by ratio)
  or adjacent (a series cut first), never with a gap.
* **start** -- index stamps: index 0 is the first Wednesday 00:00 on or after the span start (the Crowd/Cellular span
  starts on one); pairs: the first time on or after the span start with the first step's weekday and slot.

A file that breaks a convention (a slot past the day, a weekday outside 0..6, stamps that do not advance one step, a
gap between splits, windows that disagree, a second channel) is refused with one :class:`~stvfm.errors.DataError`
naming the file and what is wrong. The file's own train/val/test windows are kept in the attr ``published_windows``
(``{"window": T, "t0": {split: [first step of each window, ...]}}``), for the split stage's ``published`` protocol.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stvfm.data.canonical import canonical, parse_start
from stvfm.errors import DataError

SPLITS = ("train", "val", "test")
INDEX_SLOTS = 48  # UniST's index convention: 48 half-hour slots a day ...
INDEX_WEEKDAY0 = 2  # ... and index 0 on a Wednesday (Monday = 0)
DAY_MINUTES = 24 * 60
STANDARD_SLOTS = (24, 48, 96, 144, 288)  # slots a day tried when a file never crosses midnight


def index_weekday_slot(i: Any) -> tuple[np.ndarray, np.ndarray]:
    """UniST's reading of an integer stamp ``i`` (DataLoader.py, Crowd/Cellular): (weekday, slot of 48)."""
    i = np.asarray(i, dtype=np.int64)
    return ((i % (7 * INDEX_SLOTS)) // INDEX_SLOTS + INDEX_WEEKDAY0) % 7, i % INDEX_SLOTS


@dataclass
class _Split:
    name: str
    X: np.ndarray  # (N, T, H, W) float64
    stamps: np.ndarray  # (N, T) or (N, T, 2) int64
    periods: int


@dataclass
class StampClock:
    """What a file's timestamps say: form, slots a day, slot step per series step, interval."""

    form: str  # "index" | "weekday-slot"
    slots_per_day: int
    slot_step: int
    interval_minutes: int


def _err(msg: str, dataset: str | None, path: Path) -> DataError:
    return DataError(msg, dataset=dataset, path=str(path))


def _load(path: Path, dataset: str | None) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise _err("file not found", dataset, path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _err(f"not valid UniST JSON (truncated or corrupt?): {e}", dataset, path) from None
    if not isinstance(data, dict):
        raise _err("UniST JSON must be an object with X_train, X_val, X_test, timestamps", dataset, path)
    missing = [k for k in ("X_train", "X_val", "X_test", "timestamps") if k not in data]
    if missing:
        raise _err(
            f"missing key(s) {', '.join(missing)}; found {sorted(data)} (UniST files hold X_train, X_val, "
            "X_test as [X, X_period] and timestamps.{train,val,test})",
            dataset,
            path,
        )
    return data


def _lead_shape(a: Any, depth: int) -> tuple[int, ...]:
    """The shape of a nested list along its first elements (cheap; regularity is not checked)."""
    shape = []
    for _ in range(depth):
        if not isinstance(a, list):
            break
        shape.append(len(a))
        if not a:
            break
        a = a[0]
    return tuple(shape)


def _split(data: dict[str, Any], split: str, dataset: str | None, path: Path) -> _Split:
    key = f"X_{split}"
    part = data[key]
    if not isinstance(part, list) or len(part) != 2:
        raise _err(
            f"'{key}' must be [X, X_period] (UniST's layout: {key}[0] the windows (N, T, H, W), {key}[1] the "
            f"period arrays (N, T, P, H, W)); got a {type(part).__name__} of length "
            f"{len(part) if isinstance(part, list) else '-'}",
            dataset,
            path,
        )
    try:
        X = np.asarray(part[0], dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise _err(f"'{key}[0]' is not a regular numeric array ({str(e)[:100]})", dataset, path) from None
    if X.ndim == 5:
        raise _err(
            f"'{key}[0]' has shape {X.shape}: a channel axis ({X.shape[-1]} channel(s)) where the format "
            "has one channel, (N, T, H, W); UniST's loader adds the channel axis itself (unsqueeze(1))",
            dataset,
            path,
        )
    if X.ndim != 4 or min(X.shape) < 1:
        raise _err(f"'{key}[0]' has shape {X.shape}; expected (N, T, H, W) windows", dataset, path)
    N, T, H, W = X.shape
    pshape = _lead_shape(part[1], 5)
    if len(pshape) != 5 or pshape[:2] != (N, T) or pshape[3:] != (H, W):
        raise _err(
            f"'{key}[1]' (X_period) has shape {pshape}; expected (N, T, P, H, W) = ({N}, {T}, P, {H}, {W})",
            dataset,
            path,
        )
    stamps = data["timestamps"]
    if not isinstance(stamps, dict) or split not in stamps:
        raise _err(f"'timestamps' has no '{split}' (UniST files hold timestamps.{{train,val,test}})", dataset, path)
    try:
        S = np.asarray(stamps[split])
    except (ValueError, TypeError):
        S = np.asarray([], dtype=object)
    if not (
        np.issubdtype(S.dtype, np.number)
        and S.shape[:2] == (N, T)
        and S.ndim in (2, 3)
        and (S.ndim == 2 or S.shape[2] == 2)
    ):
        raise _err(
            f"'timestamps.{split}' has shape {S.shape} ({S.dtype}); expected ({N}, {T}) integer step indices "
            f"or ({N}, {T}, 2) (weekday, slot) pairs, one per step of X_{split}",
            dataset,
            path,
        )
    if not np.all(np.round(S) == S):
        raise _err(f"'timestamps.{split}' holds non-integer values (e.g. {S[np.round(S) != S][0]})", dataset, path)
    return _Split(split, X, S.astype(np.int64), int(pshape[2]))


def _mode(values: np.ndarray) -> int | None:
    if values.size == 0:
        return None
    return int(Counter(values.tolist()).most_common(1)[0][0])


def read_clock(splits: Sequence[_Split], *, dataset: str | None, path: Path) -> StampClock:
    """The interval a file's timestamps imply (see the module doc); refuses stamps that break the conventions."""
    forms = {s.stamps.ndim for s in splits}
    if len(forms) != 1:
        raise _err("timestamps mix integer indices and (weekday, slot) pairs between splits", dataset, path)
    if forms == {2}:
        for s in splits:
            t = s.stamps
            off = t - t[:, :1]
            bad = np.argwhere(off != np.arange(t.shape[1]))
            if bad.size:
                i, k = (int(v) for v in bad[0])
                raise _err(
                    f"timestamps.{s.name}: window {i}, step {k} is index {int(t[i, k])}, expected "
                    f"{int(t[i, 0]) + k} (UniST's step indices advance by one within a window)",
                    dataset,
                    path,
                )
            if (t < 0).any():
                raise _err(f"timestamps.{s.name}: negative step index {int(t.min())}", dataset, path)
        return StampClock("index", INDEX_SLOTS, 1, DAY_MINUTES // INDEX_SLOTS)
    wd = [s.stamps[..., 0] for s in splits]
    sl = [s.stamps[..., 1] for s in splits]
    for s, w, q in zip(splits, wd, sl, strict=True):
        for arr, what, hi in ((w, "weekday", 7), (q, "slot", None)):
            bad = np.argwhere((arr < 0) | ((arr >= hi) if hi else False))
            if bad.size:
                i, k = (int(v) for v in bad[0])
                rng = "0..6 (Monday = 0)" if hi else ">= 0"
                raise _err(
                    f"timestamps.{s.name}: {what} {int(arr[i, k])} at window {i}, step {k} is not {rng}", dataset, path
                )
    same = [(w[:, 1:] == w[:, :-1]) for w in wd]
    d = _mode(np.concatenate([(q[:, 1:] - q[:, :-1])[m] for q, m in zip(sl, same, strict=True)]))
    d = d if d and d > 0 else 1
    nxt = [(w[:, 1:] == (w[:, :-1] + 1) % 7) for w in wd]
    S = _mode(np.concatenate([(q[:, :-1] + d - q[:, 1:])[m] for q, m in zip(sl, nxt, strict=True)]))
    top = int(max(int(q.max()) for q in sl))
    if S is None:  # the file never crosses midnight inside a window: the smallest usual day that holds its slots
        S = next((n for n in STANDARD_SLOTS if n > top), top + 1)
    if S <= 0 or DAY_MINUTES % S:
        raise _err(
            f"its (weekday, slot) timestamps imply {S} slots a day (slot before a day change + step {d}), "
            "which does not divide a day into whole minutes",
            dataset,
            path,
        )
    for s, q in zip(splits, sl, strict=True):
        bad = np.argwhere(q >= S)
        if bad.size:
            i, k = (int(v) for v in bad[0])
            raise _err(
                f"timestamps.{s.name}: slot {int(q[i, k])} at window {i}, step {k} is past the day: the file's "
                f"days have {S} slots (0..{S - 1}, from its own day boundaries)",
                dataset,
                path,
            )
    week = 7 * S
    minutes = DAY_MINUTES // S * d
    for s, w, q in zip(splits, wd, sl, strict=True):
        pos = w * S + q
        bad = np.argwhere((pos[:, 1:] - pos[:, :-1]) % week != d)
        if bad.size:
            i, k = (int(v) for v in bad[0])
            raise _err(
                f"timestamps.{s.name}: window {i}, step {k + 1} ({int(w[i, k + 1])}, {int(q[i, k + 1])}) does "
                f"not follow ({int(w[i, k])}, {int(q[i, k])}) by one {minutes}-minute step ({d} slot(s) of "
                f"{S} a day)",
                dataset,
                path,
            )
    return StampClock("weekday-slot", S, d, minutes)


def _positions(splits: Sequence[_Split], clock: StampClock, *, dataset: str | None, path: Path) -> list[np.ndarray]:
    """Each window's first step on one axis (index stamps: the index itself; pairs: from train's first window)."""
    if clock.form == "index":
        return [s.stamps[:, 0].copy() for s in splits]
    S, d = clock.slots_per_day, clock.slot_step
    week = 7 * S
    out, prev = [], None
    for s in splits:
        q = s.stamps[:, 0, 0] * S + s.stamps[:, 0, 1]
        steps = np.diff(q) % week
        first = 0 if prev is None else prev[1] + ((int(q[0]) - prev[0]) % week)
        rel = np.concatenate([[first], first + np.cumsum(steps)]) if len(q) > 1 else np.array([first])
        if (rel % d).any():
            i = int(np.flatnonzero(rel % d)[0])
            raise _err(
                f"timestamps.{s.name}: window {i} starts {int(rel[i])} slot(s) after train's first window, not a "
                f"whole number of {clock.interval_minutes}-minute steps",
                dataset,
                path,
            )
        out.append((rel // d).astype(np.int64))
        prev = (int(q[-1]), int(rel[-1]))
    return out


def _place(
    splits: Sequence[_Split], pos: list[np.ndarray], *, dataset: str | None, path: Path
) -> tuple[np.ndarray, int, list[str]]:
    """Put every window's frames on one axis; returns (series (L, H, W), first position, notes)."""
    lo = int(min(int(p.min()) for p in pos))
    T = splits[0].X.shape[1]
    L = int(max(int(p.max()) for p in pos)) + T - lo
    H, W = splits[0].X.shape[2:]
    series = np.zeros((L, H, W), dtype=np.float64)
    placed = np.zeros(L, dtype=bool)
    notes = []
    for s, p in zip(splits, pos, strict=True):
        p = p - lo
        if np.unique(p).size != p.size:
            raise _err(f"X_{s.name}: two windows start at the same step (by their timestamps)", dataset, path)
        stride = np.unique(np.diff(p)) if p.size > 1 else np.array([0])
        notes.append(
            f"{s.name}: {p.size} windows of {T} steps, stride {','.join(str(int(v)) for v in stride)}, "
            f"X_period {s.periods} day(s)"
        )
        for t in range(T):
            at = p + t
            frame = s.X[:, t]
            again = placed[at]
            if again.any():
                a, b = frame[again], series[at[again]]
                diff = ~((a == b) | (np.isnan(a) & np.isnan(b))).reshape(a.shape[0], -1).all(axis=1)
                if diff.any():
                    i = int(np.flatnonzero(again)[np.argmax(diff)])
                    raise _err(
                        f"X_{s.name}: window {i}, step {t} (series step {int(at[i])}) differs from the value an "
                        "earlier window placed at that step: the windows do not overlap exactly",
                        dataset,
                        path,
                    )
            series[at[~again]] = frame[~again]
            placed[at] = True
    if not placed.all():
        hole = int(np.argmin(placed))
        n = int(np.argmax(placed[hole:])) if placed[hole:].any() else L - hole
        spans = [(s.name, int(p.min()) - lo, int(p.max()) - lo + T) for s, p in zip(splits, pos, strict=True)]
        for (a, _, a_end), (b, b_lo, _) in pairwise(spans):
            if a_end <= hole < b_lo:
                raise _err(
                    f"a gap of {b_lo - a_end} step(s) between {a} and {b}: {a} ends at step {a_end - 1}, {b} "
                    f"starts at step {b_lo} (by their timestamps); UniST's splits follow one another",
                    dataset,
                    path,
                )
        raise _err(
            f"{n} step(s) uncovered by any window (first at step {hole}); the windows are not contiguous", dataset, path
        )
    for (a, pa), (b, pb) in pairwise(zip(SPLITS, pos, strict=True)):
        k = int(pa.max()) + T - int(pb.min())
        notes.append(f"{b} overlaps {a} by {k} step(s)" if k > 0 else f"{b} follows {a} (adjacent)")
    return series, lo, notes


def _start(
    clock: StampClock, splits: Sequence[_Split], lo: int, start: Any, *, dataset: str | None, path: Path
) -> tuple[np.datetime64, str]:
    """The first step's time (see the module doc) and a note on how it was set."""
    t0 = parse_start(start, dataset=dataset, path=str(path))
    day0 = t0.astype("datetime64[D]")
    day_ns = day0.astype("datetime64[ns]")
    if clock.form == "index":
        if t0 != day_ns:  # a span start inside a day: index 0 is a midnight, so the next one
            day0, day_ns = day0 + np.timedelta64(1, "D"), (day0 + np.timedelta64(1, "D")).astype("datetime64[ns]")
        wd0 = int((day0.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday; Monday = 0
        origin = day_ns + np.timedelta64((INDEX_WEEKDAY0 - wd0) % 7, "D")
        first = origin + lo * np.timedelta64(clock.interval_minutes, "m")
        moved = (
            ""
            if origin == t0
            else f" (the span start {np.datetime_as_string(t0, unit='m')} is not a Wednesday 00:00, "
            "UniST's index origin)"
        )
        return first, f"index 0 = {np.datetime_as_string(origin, unit='m')}{moved}; first index {lo}"
    S = clock.slots_per_day
    w, q = (int(v) for v in splits[0].stamps[0, 0])
    step = np.timedelta64(DAY_MINUTES // S, "m").astype("timedelta64[ns]")
    k0 = -(-(t0 - day_ns) // step)  # first slot boundary at or after t0
    here = ((int(day0.astype(np.int64)) + 3) % 7) * S + int(k0)
    first = day_ns + (int(k0) + ((w * S + q) - here) % (7 * S)) * step
    return first, (
        f"start {np.datetime_as_string(first, unit='m')}: the first step (weekday {w}, slot {q}) on or "
        f"after {np.datetime_as_string(t0, unit='m')}"
    )


def read_unist(
    path: str | Path, *, dataset: str | None, start: Any = None, channel_names: Sequence[str] | None = None
) -> xr.Dataset:
    """A UniST ``<Name>_short.json`` -> the canonical Dataset (see the module doc). ``start``: the span start the
    stamps are aligned to (the dataset table's, or 1970-01-01). Attrs: ``interval_minutes`` (from the stamps),
    ``stamps``, ``slots_per_day``, ``periods``, ``published_windows``, ``note``."""
    path = Path(path)
    data = _load(path, dataset)
    splits = [_split(data, s, dataset, path) for s in SPLITS]
    del data
    shapes = {s.X.shape[1:] for s in splits}
    if len(shapes) != 1:
        raise _err(
            "X_train, X_val, X_test differ in window length or grid: "
            + ", ".join(f"{s.name} {s.X.shape[1:]}" for s in splits),
            dataset,
            path,
        )
    clock = read_clock(splits, dataset=dataset, path=path)
    pos = _positions(splits, clock, dataset=dataset, path=path)
    series, lo, notes = _place(splits, pos, dataset=dataset, path=path)
    first, how = _start(clock, splits, lo, start, dataset=dataset, path=path)
    T = splits[0].X.shape[1]
    names = list(channel_names) if channel_names is not None and len(channel_names) == 1 else ["flow"]
    ds = canonical(
        series[..., None],
        first,
        clock.interval_minutes,
        names,
        source=f"unist:{path.name}",
        note="; ".join([*notes, how]),
    )
    ds.attrs.update(
        {
            "stamps": clock.form,
            "slots_per_day": clock.slots_per_day,
            "slot_step": clock.slot_step,
            "periods": splits[0].periods,
            "published_windows": {
                "window": int(T),
                "t0": {s.name: [int(v) - lo for v in p] for s, p in zip(splits, pos, strict=True)},
            },
        }
    )
    return ds
