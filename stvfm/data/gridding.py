"""Trip records -> in/out-flow counts on a regular grid (the crowd-flow construction of ST-ResNet/UniST datasets).

A trip is counted twice: as **inflow** of the cell where it *ends*, in the time bin of ``end_time``, and as **outflow**
of the cell where it *starts*, in the bin of ``start_time``. Channel order is ``(inflow, outflow)``, the order of the
real NYC samples (``../shared/data/real/README.md``).

Geometry (:class:`GridSpec`): ``bbox = [lat_min, lon_min, lat_max, lon_max]`` split into ``H`` rows x ``W`` columns.
Row 0 is the **northern** edge (``lat_max``), so a frame renders like a map image; column 0 is the western edge.
The bbox is closed: a point exactly on ``lat_min`` / ``lon_max`` falls in the last row / column.
Time: bin ``k`` covers ``[start + k*interval, start + (k+1)*interval)``; ``T = (end - start) / interval`` bins, ``end``
exclusive. An endpoint outside the bbox or the span (or with a NaN coordinate / null time) is dropped for that channel
and counted in :class:`GridCounts` ``dropped``.

Streaming: :func:`grid_trips` takes an iterator of column batches (the canonical trip batches of
:func:`stvfm.data.trips.iter_trip_batches`, or any mappings column -> array) and accumulates with ``np.bincount``
into one ``int64`` array of ``T*H*W*2`` counts, so peak memory is ``O(batch + grid)`` and does not grow with the number
of records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from stvfm.datasets.trip_schema import TRIP_COLUMNS

CHANNELS = ("inflow", "outflow")
SLICE = 1 << 16  # rows per elementwise pass (measured fastest of 2^14..2^20 on 10M records)


@dataclass(frozen=True)
class GridSpec:
    bbox: tuple[float, float, float, float]  # lat_min, lon_min, lat_max, lon_max
    grid: tuple[int, int]  # H, W
    start: np.datetime64  # first bin start
    interval_minutes: int
    steps: int  # T

    def __post_init__(self) -> None:
        lat0, lon0, lat1, lon1 = self.bbox
        if not (lat1 > lat0 and lon1 > lon0):
            raise ValueError(f"bbox must be [lat_min, lon_min, lat_max, lon_max] with max > min, got {list(self.bbox)}")
        if self.grid[0] < 1 or self.grid[1] < 1 or self.steps < 1 or self.interval_minutes < 1:
            raise ValueError(f"grid {self.grid}, steps {self.steps} and interval {self.interval_minutes} must be >= 1")

    @classmethod
    def from_span(cls, bbox, grid, start, end, interval_minutes: int) -> GridSpec:
        """``end`` is exclusive; ``T = ceil((end - start) / interval)``."""
        s = np.datetime64(start, "ns")
        e = np.datetime64(end, "ns")
        step = np.timedelta64(int(interval_minutes), "m").astype("timedelta64[ns]")
        steps = int(-(-(e - s) // step))
        return cls(tuple(float(v) for v in bbox), (int(grid[0]), int(grid[1])), s, int(interval_minutes), steps)

    @property
    def interval_ns(self) -> int:
        return int(self.interval_minutes) * 60 * 1_000_000_000

    @property
    def start_ns(self) -> int:
        return int(self.start.astype("datetime64[ns]").astype(np.int64))

    def times(self) -> np.ndarray:
        return self.start.astype("datetime64[ns]") + np.arange(self.steps) * np.timedelta64(self.interval_ns, "ns")


@dataclass
class GridCounts:
    counts: np.ndarray  # (T, H, W, 2) int64, channels (inflow, outflow)
    records: int = 0  # rows read
    counted: dict[str, int] = field(default_factory=dict)  # per channel: endpoints counted
    dropped: dict[str, int] = field(default_factory=dict)  # per channel: endpoints outside bbox/span (or null)


def _cells(spec: GridSpec, t_ns: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat index ``(t*H + row)*W + col`` of every point and the mask of valid (in bbox and span) points."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _cells_unchecked(spec, t_ns, lat, lon)


def _cells_unchecked(
    spec: GridSpec, t_ns: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    H, W = spec.grid
    lat0, lon0, lat1, lon1 = spec.bbox
    # a time outside [start, end) (incl. a null: INT64 min) gives a negative offset or one past the span; viewed as
    # unsigned, both are >= span, so one comparison drops them
    tb = t_ns - spec.start_ns
    ok = tb.view(np.uint64) < np.uint64(spec.steps * spec.interval_ns)
    ok &= lat >= lat0
    ok &= lat <= lat1
    ok &= lon >= lon0
    ok &= lon <= lon1  # NaN coordinates fail every comparison, so they are dropped too
    row = lat1 - lat
    row *= H / (lat1 - lat0)
    np.floor(row, out=row)
    np.minimum(row, H - 1, out=row)  # lat == lat_min lands on row H: the closed edge belongs to the last row
    col = lon - lon0
    col *= W / (lon1 - lon0)
    np.floor(col, out=col)
    np.minimum(col, W - 1, out=col)
    row *= W
    row += col
    tb //= spec.interval_ns
    tb *= H * W
    idx = row.astype(np.int64)
    idx += tb
    return idx, ok


def _accumulate(flat: np.ndarray, idx: np.ndarray, ok: np.ndarray) -> int:
    """Add one count per valid index into ``flat``: one ``np.bincount`` over the batch's own index range (bin 0
    takes the dropped points). Boolean indexing is avoided: it costs more than the rest of the batch together."""
    n = int(np.count_nonzero(ok))
    if n == 0:
        return 0
    lo = int(np.min(idx, where=ok, initial=np.iinfo(np.int64).max))
    hi = int(np.max(idx, where=ok, initial=-1))
    idx -= lo - 1
    np.copyto(idx, 0, where=~ok)
    flat[lo : hi + 1] += np.bincount(idx, minlength=hi - lo + 2)[1:]
    return n


def _as_ns(a) -> np.ndarray:
    """A pyarrow timestamp column / numpy datetime64 array -> int64 ns, nulls -> INT64 min (outside every span)."""
    if hasattr(a, "to_numpy") and not isinstance(a, np.ndarray):  # pyarrow Array/ChunkedArray
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_timestamp(a.type) and a.type.unit != "ns":
            a = a.cast(pa.timestamp("ns", a.type.tz))
        a = a.cast(pa.int64())
        if a.null_count:
            a = pc.fill_null(a, np.iinfo(np.int64).min)
        return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.int64)
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.datetime64):
        return a.astype("datetime64[ns]").astype(np.int64)
    return a.astype(np.int64)


def _as_f64(a) -> np.ndarray:
    if hasattr(a, "to_numpy") and not isinstance(a, np.ndarray):
        import pyarrow as pa
        import pyarrow.compute as pc

        a = a.cast(pa.float64())
        if a.null_count:
            a = pc.fill_null(a, float("nan"))
        return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(a, dtype=np.float64)


def grid_trips(batches: Iterable[Mapping[str, object]], spec: GridSpec) -> GridCounts:
    """Grid an iterator of batches (mappings column -> array, e.g. ``pyarrow.RecordBatch``) with the canonical
    trip columns (:data:`TRIP_COLUMNS`). Returns counts ``(T, H, W, 2)`` (inflow, outflow) and per-channel tallies."""
    H, W = spec.grid
    n = spec.steps * H * W
    inflow = np.zeros(n, dtype=np.int64)
    outflow = np.zeros(n, dtype=np.int64)
    records = 0
    counted = {"inflow": 0, "outflow": 0}
    for b in batches:
        cols = {
            k: (_as_ns if k.endswith("_time") else _as_f64)(b.column(k) if hasattr(b, "column") else b[k])
            for k in TRIP_COLUMNS
        }
        m = cols["start_time"].shape[0]
        records += m
        # work in cache-sized slices: the ~20 elementwise passes then stay in cache and reuse freed memory
        for a in range(0, m, SLICE):
            c = {k: v[a : a + SLICE] for k, v in cols.items()}
            counted["outflow"] += _accumulate(outflow, *_cells(spec, c["start_time"], c["start_lat"], c["start_lon"]))
            counted["inflow"] += _accumulate(inflow, *_cells(spec, c["end_time"], c["end_lat"], c["end_lon"]))
        del cols
    counts = np.stack([inflow.reshape(spec.steps, H, W), outflow.reshape(spec.steps, H, W)], axis=-1)
    dropped = {k: records - v for k, v in counted.items()}
    return GridCounts(counts=counts, records=records, counted=counted, dropped=dropped)


def grid_arrays(columns: Mapping[str, np.ndarray], spec: GridSpec) -> GridCounts:
    """In-memory convenience: one batch holding every record."""
    return grid_trips([columns], spec)
