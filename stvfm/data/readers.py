"""Readers: every raw format -> one canonical form.

Canonical form: an ``xarray.Dataset`` with var ``flow`` float32 dims ``(time, y, x, channel)``, coords ``time``
(datetime64[ns], regular, step ``interval_minutes``) and ``channel`` (names), attrs ``interval_minutes``, ``bbox``
(or None), ``source`` (reader kind + file names) and reader notes. Readers do not validate values (see
:mod:`stvfm.data.validate`); they refuse what they cannot interpret (missing keys, inconsistent windows) with a
:class:`~stvfm.errors.DataError` naming the dataset and the file.

Formats (``kind`` in the raw ``manifest.json``, or guessed from the file suffix for ``local_sources``):

``npz``    gridded ``.npz``: ``flow`` (T, H, W, C), int ``freq_minutes``, optional ``start`` (ISO, first slot start).
``zarr``   a ``.zarr`` store holding var ``flow`` (time, y, x, channel) (e.g. one written by the grid stage), or any
           4-D var with attr ``interval_minutes``.
``stdn``   STDN ``.npz``: ``volume`` (T, H, W, 2), channels (outflow, inflow) as published -> swapped to
           (inflow, outflow) (see ``../shared/data/real/README.md``, "Channel order").
``stssl``  ST-SSL ``train/val/test.npz``: sliding windows ``x`` (N, L, nodes, C), ``y`` (N, 1, nodes, C) with
           ``x_offsets``/``y_offsets``. Window ``i`` is anchored at step ``i`` and frame ``o`` placed at ``i + o``; the
           contiguous series is rebuilt **only** if every repeated placement is bit-identical, consecutive windows do
           overlap, and the placements cover every step (no holes). Files are concatenated as train, val, test, so the
           check also proves they are adjacent. Nodes are reshaped row-major to (H, W) of the dataset table.
``unist``  UniST ``<Name>_short.json``, the format of the paper's ten datasets: read by :mod:`stvfm.data.unist`, which
           derives the interval from the file's timestamps and the grid and channel from its arrays.
``trips`` / ``trips-citibike`` / ``trips-tlc``  trip records (Parquet, CSV, Citi Bike's zips of CSVs, TLC Parquet
           with ``taxi_zones.zip``), read by :mod:`stvfm.data.trips` (every column spelling and time format of the
           releases, TLC zone ids -> zone centroids) and gridded by :mod:`stvfm.data.gridding` with the manifest's
           ``bbox``, ``start``, ``end``, ``interval_minutes``, ``grid``; the kind only words the messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stvfm.data.canonical import canonical, parse_start
from stvfm.data.gridding import CHANNELS as TRIP_CHANNELS
from stvfm.data.gridding import GridSpec
from stvfm.data.trips import grid_trip_files
from stvfm.data.unist import read_unist
from stvfm.errors import DataError

# what a corrupt raw file's message advises; stages.load_canonical swaps it for a local_sources entry's own file
REFETCH_HINT = "Re-download it (delete it and run `stvfm data download {ds}`)"
KINDS = ("npz", "zarr", "stdn", "stssl", "unist", "trips", "trips-citibike", "trips-tlc")


@dataclass
class ReadResult:
    ds: xr.Dataset
    records: dict[str, int] = field(default_factory=dict)  # per channel: records counted (trips only)
    dropped: dict[str, int] = field(default_factory=dict)  # per channel: records outside bbox/span (trips only)


def _load_npz(path: Path, dataset: str | None) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError("file not found", dataset=dataset, path=str(path)) from None
    except Exception as e:  # BadZipFile, ValueError, EOFError, tokenize errors from a damaged .npy header ...
        raise DataError(
            f"not a readable .npz (truncated or corrupt?): {e}. {REFETCH_HINT.format(ds=dataset or '<ds>')}",
            dataset=dataset,
            path=str(path),
        ) from None


def _need(arrays: Mapping[str, np.ndarray], key: str, ndim: int | None, path: Path, dataset: str | None, what: str):
    if key not in arrays:
        raise DataError(f"missing array '{key}' ({what}); found keys {sorted(arrays)}", dataset=dataset, path=str(path))
    a = arrays[key]
    if ndim is not None and a.ndim != ndim:
        raise DataError(
            f"array '{key}' has rank {a.ndim} (shape {a.shape}); expected rank {ndim} ({what})",
            dataset=dataset,
            path=str(path),
        )
    return a


# ---------------------------------------------------------------- gridded npz / zarr / STDN
def read_npz(
    path: Path,
    *,
    dataset: str | None = None,
    interval_minutes: int | None = None,
    start: Any = None,
    channel_names: Sequence[str] | None = None,
) -> xr.Dataset:
    """Gridded ``.npz``: ``flow`` (T, H, W, C) + int ``freq_minutes`` (+ optional ``start``)."""
    a = _load_npz(path, dataset)
    flow = _need(a, "flow", 4, path, dataset, "(T, H, W, C)")
    if "freq_minutes" in a:
        freq = a["freq_minutes"]
        if freq.ndim != 0 or not np.issubdtype(freq.dtype, np.integer) or int(freq) < 1:
            raise DataError(
                f"'freq_minutes' must be a positive integer scalar, got {freq!r}", dataset=dataset, path=str(path)
            )
        interval_minutes = int(freq)
    elif interval_minutes is None:
        raise DataError("missing int scalar 'freq_minutes' (minutes per step)", dataset=dataset, path=str(path))
    if "start" in a:
        start = str(parse_start(a["start"], dataset=dataset, path=f"{path} (array 'start')").astype("datetime64[s]"))
    return canonical(flow, start, interval_minutes, channel_names, source=f"npz:{path.name}")


def read_stdn(path: Path, *, dataset: str | None = None, interval_minutes: int = 30, start: Any = None) -> xr.Dataset:
    """STDN ``volume`` (T, H, W, 2) with published channel order (outflow, inflow) -> (inflow, outflow)."""
    a = _load_npz(path, dataset)
    v = _need(a, "volume", 4, path, dataset, "(T, H, W, 2)")
    if v.shape[-1] != 2:
        raise DataError(
            f"'volume' has {v.shape[-1]} channels; STDN volume has 2 (outflow, inflow)", dataset=dataset, path=str(path)
        )
    return canonical(
        v[..., ::-1],
        start,
        interval_minutes,
        TRIP_CHANNELS,
        source=f"stdn:{path.name}",
        note="STDN channels (outflow, inflow) swapped to (inflow, outflow)",
    )


def read_zarr(path: Path, *, dataset: str | None = None) -> xr.Dataset:
    try:
        src = xr.open_zarr(path, consolidated=False)
    except Exception as e:  # zarr raises many types for a broken store
        raise DataError(f"not a readable Zarr store: {e}", dataset=dataset, path=str(path)) from None
    var = "flow" if "flow" in src.data_vars else next((v for v in src.data_vars if src[v].ndim == 4), None)
    if var is None:
        raise DataError(
            f"no 4-D variable (time, y, x, channel) in the store; vars {list(src.data_vars)}",
            dataset=dataset,
            path=str(path),
        )
    da = src[var]
    interval = src.attrs.get("interval_minutes", da.attrs.get("interval_minutes"))
    if interval is None and "time" in src.coords and src.sizes.get("time", 0) > 1:
        interval = int((src["time"].values[1] - src["time"].values[0]) / np.timedelta64(1, "m"))
    if interval is None:
        raise DataError(
            "store has no attr 'interval_minutes' and no time coordinate to infer it from",
            dataset=dataset,
            path=str(path),
        )
    if "time" in src.coords and src.sizes.get("time", 0) > 1:
        steps = np.diff(src["time"].values.astype("datetime64[ns]").astype(np.int64))
        bad = np.flatnonzero(steps != int(interval) * 60 * 10**9)
        if bad.size:
            raise DataError(
                f"time coordinate is not regular at {interval}-minute steps: {bad.size} gaps/irregular steps, "
                f"first after {src['time'].values[bad[0]]}. Fill the missing steps (e.g. with 0 counts)",
                dataset=dataset,
                path=str(path),
            )
    start = str(src["time"].values[0]) if "time" in src.coords else src.attrs.get("start")
    names = [str(c) for c in src["channel"].values] if "channel" in src.coords else None
    from stvfm.data.store import check_chunks, read_values

    check_chunks(
        path,
        var,
        dataset=dataset,
        fix="write the missing steps (0 counts where nothing happened) into the store, or drop them from the time axis",
    )
    values = read_values(da, path, dataset=dataset, fix="the input store is damaged; replace it")
    ds = canonical(
        values, parse_start(start, dataset=dataset, path=str(path)), int(interval), names, source=f"zarr:{path.name}"
    )
    if src.attrs.get("bbox") is not None:
        ds.attrs["bbox"] = list(src.attrs["bbox"])
    return ds


# ---------------------------------------------------------------- ST-SSL windows
def rebuild_windows(
    frames: Sequence[tuple[int, np.ndarray]], n: int, *, stride: int = 1, dataset: str | None, path: str
) -> tuple[np.ndarray, int]:
    """Place frame arrays of sliding windows on one time axis and verify consistency.

    ``frames`` = [(offset, array (n, ...)), ...]: window ``i``'s frame at ``offset`` sits at step ``i*stride + offset``.
    Returns (series (L, ...), first_offset). Refuses (DataError) on any mismatch between repeated placements, when
    consecutive windows share no step, or when a step is left uncovered.
    """
    offs = sorted({o for o, _ in frames})
    lo, hi = offs[0], offs[-1]
    if n > 1 and not any(o + stride in offs for o in offs):
        raise DataError(
            f"consecutive windows cannot be verified to overlap: offsets {offs} contain no two adjacent "
            "steps, so the series cannot be rebuilt",
            dataset=dataset,
            path=path,
        )
    L = (n - 1) * stride + 1 + hi - lo
    shape = frames[0][1].shape[1:]
    series = np.zeros((L, *shape), dtype=np.float64)
    placed = np.zeros(L, dtype=bool)
    for o, arr in sorted(frames, key=lambda f: f[0]):
        pos = np.arange(n) * stride + (o - lo)
        new = ~placed[pos]
        old = ~new
        if old.any():
            a = arr[old].astype(np.float64)
            b = series[pos[old]]
            bad = ~((a == b) | (np.isnan(a) & np.isnan(b))).reshape(a.shape[0], -1).all(axis=1)
            if bad.any():
                i = int(np.flatnonzero(old)[np.argmax(bad)])
                raise DataError(
                    f"sliding windows do not overlap exactly: window {i}, offset {o} (step {i + o}) differs "
                    f"from the frame another window placed there ({int(bad.sum())} mismatching frames); "
                    "refusing to rebuild a contiguous series",
                    dataset=dataset,
                    path=path,
                )
        series[pos[new]] = arr[new]
        placed[pos[new]] = True
    if not placed.all():
        holes = np.flatnonzero(~placed)
        raise DataError(
            f"sliding windows leave {holes.size} steps uncovered (first at step {int(holes[0]) + lo}); "
            "the series is not contiguous",
            dataset=dataset,
            path=path,
        )
    return series, lo


def read_stssl(
    paths: Sequence[Path], *, dataset: str | None, grid: tuple[int, int], interval_minutes: int, start: Any = None
) -> xr.Dataset:
    """ST-SSL ``{train,val,test}.npz`` windows -> contiguous series (see module doc)."""
    xs, ys, xo, yo = [], [], None, None
    for p in paths:
        a = _load_npz(p, dataset)
        x = _need(a, "x", 4, p, dataset, "(N, L, nodes, C) input windows")
        y = _need(a, "y", 4, p, dataset, "(N, L_y, nodes, C) target windows")
        xoff = np.asarray(_need(a, "x_offsets", None, p, dataset, "input offsets")).reshape(-1).astype(int)
        yoff = np.asarray(_need(a, "y_offsets", None, p, dataset, "target offsets")).reshape(-1).astype(int)
        if x.shape[1] != xoff.size or y.shape[1] != yoff.size or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise DataError(
                f"inconsistent shapes: x {x.shape}, y {y.shape}, x_offsets {xoff.size}, y_offsets {yoff.size}",
                dataset=dataset,
                path=str(p),
            )
        if xo is not None and (not np.array_equal(xo, xoff) or not np.array_equal(yo, yoff)):
            raise DataError("offsets differ from the previous file", dataset=dataset, path=str(p))
        xo, yo = xoff, yoff
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    N, _, nodes, C = x.shape
    H, W = grid
    if nodes != H * W:
        raise DataError(
            f"{nodes} nodes cannot be reshaped to the grid {H}x{W}; set the dataset's grid",
            dataset=dataset,
            path=str(paths[0]),
        )
    frames = [(int(o), x[:, k]) for k, o in enumerate(xo)] + [(int(o), y[:, k]) for k, o in enumerate(yo)]
    where = ", ".join(p.name for p in paths)
    series, _ = rebuild_windows(frames, N, dataset=dataset, path=where)
    flow = series.reshape(series.shape[0], H, W, C)  # row-major node = row*W + col
    return canonical(
        flow,
        start,
        interval_minutes,
        TRIP_CHANNELS if C == 2 else None,
        source=f"stssl:{where}",
        note=f"rebuilt from {N} windows, offsets {xo.tolist()} + {yo.tolist()}",
    )


# ---------------------------------------------------------------- dispatch
def guess_kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith(".zarr"):
        return "zarr"
    if name.endswith(".json"):
        return "unist"
    if name.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
        return "trips"
    if name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
        except Exception:
            return "npz"
        if "volume" in keys:
            return "stdn"
        if {"x", "y", "x_offsets"} <= keys:
            return "stssl"
        return "npz"
    raise DataError(f"cannot tell the format of '{path.name}'; use .npz, .zarr, .json (UniST), .parquet or .csv")


def _stssl_order(p: Path) -> int:
    order = {"train": 0, "val": 1, "test": 2}
    return order.get(p.stem.lower(), 3)


def _read_trips(
    files: Sequence[Path],
    kind: str,
    spec: GridSpec,
    *,
    dataset: str | None,
    zones_zip: Path | None,
    channel_names: Sequence[str] | None,
    batch_size: int,
) -> ReadResult:
    """Trip records -> counts (:func:`stvfm.data.trips.grid_trip_files`) -> the canonical form."""
    g = grid_trip_files(files, spec, kind=kind, dataset=dataset, zones_zip=zones_zip, batch_rows=batch_size)
    ds = canonical(
        g.counts,
        spec.start,
        spec.interval_minutes,
        TRIP_CHANNELS,
        source="trips:" + ",".join(p.name for p in files),
        bbox=[float(v) for v in spec.bbox],
    )
    if channel_names is not None and list(channel_names) != list(TRIP_CHANNELS):
        # 1-channel datasets built from trips (e.g. synthetic stand-ins of Cellular/Traffic*) keep the named channel(s)
        unknown = [c for c in channel_names if c not in TRIP_CHANNELS]
        if unknown:
            raise DataError(
                f"trip records give channels {list(TRIP_CHANNELS)}, not {unknown}", dataset=dataset, path=str(files[0])
            )
        ds = ds.sel(channel=list(channel_names))
    return ReadResult(ds, records=dict(g.counted), dropped=dict(g.dropped))


def read_raw(
    files: Sequence[Path],
    kind: str,
    *,
    dataset: str | None,
    interval_minutes: int | None = None,
    grid: tuple[int, int] | None = None,
    start: Any = None,
    end: Any = None,
    bbox: Sequence[float] | None = None,
    channel_names: Sequence[str] | None = None,
    batch_size: int = 1 << 20,
    zones_zip: Path | None = None,
) -> ReadResult:
    """Read the raw files of one dataset into the canonical form. ``kind`` is one of :data:`KINDS`."""
    files = [Path(f) for f in files]
    if not files:
        raise DataError("no input files", dataset=dataset)
    if kind not in KINDS:
        raise DataError(f"unknown reader kind '{kind}'; known: {', '.join(KINDS)}", dataset=dataset)
    if kind.startswith("trips"):
        missing = [
            k
            for k, v in (
                ("bbox", bbox),
                ("start", start),
                ("end", end),
                ("interval_minutes", interval_minutes),
                ("grid", grid),
            )
            if v is None
        ]
        if missing:
            raise DataError(
                f"gridding trip records needs {', '.join(missing)} (manifest.json fields or local_sources entry keys)",
                dataset=dataset,
                path=str(files[0]),
            )
        try:
            gspec = GridSpec.from_span(bbox, grid, start, end, int(interval_minutes))
        except ValueError as e:
            raise DataError(f"bad gridding spec: {e}", dataset=dataset, path=str(files[0])) from None
        return _read_trips(
            files, kind, gspec, dataset=dataset, zones_zip=zones_zip, channel_names=channel_names, batch_size=batch_size
        )
    if kind == "stssl":
        if grid is None or interval_minutes is None:
            raise DataError("ST-SSL windows need the grid (H, W) and interval of the dataset", dataset=dataset)
        return ReadResult(
            read_stssl(
                sorted(files, key=_stssl_order),
                dataset=dataset,
                grid=grid,
                interval_minutes=interval_minutes,
                start=start,
            )
        )
    if len(files) != 1:
        raise DataError(f"reader '{kind}' takes one file, got {[f.name for f in files]}", dataset=dataset)
    f = files[0]
    if kind == "npz":
        ds = read_npz(f, dataset=dataset, interval_minutes=interval_minutes, start=start, channel_names=channel_names)
    elif kind == "zarr":
        ds = read_zarr(f, dataset=dataset)
    elif kind == "stdn":
        ds = read_stdn(f, dataset=dataset, interval_minutes=interval_minutes or 30, start=start)
    else:  # unist: the file decides interval, grid and channels (the table's `interval_minutes` is not used)
        ds = read_unist(f, dataset=dataset, start=start, channel_names=channel_names)
    return ReadResult(ds)
