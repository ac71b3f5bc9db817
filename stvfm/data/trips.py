"""Trip records -> canonical trip batches, and their gridding: the one reader of trip records.

:func:`iter_trip_batches` streams trip files as ``pyarrow.RecordBatch`` es in the canonical trip schema
(:data:`TRIP_SCHEMA`: ``start_time``, ``end_time`` ``timestamp[ns]``, naive local time; ``start_lat``, ``start_lon``,
``end_lat``, ``end_lon`` ``float64``), ready for :func:`stvfm.data.gridding.grid_trips`; :func:`grid_trip_files`
does both and refuses what gives no grid. Memory stays ``O(batch_rows)`` whatever the size of the files. The same
code reads the published NYC files of the ``bikenyc*-trips`` / ``taxinyc*-trips`` datasets (reader kinds
``trips-citibike``, ``trips-tlc``), the synthetic city's Parquet and a user's own trip records (kind ``trips``); the
kind only words the error messages.

Files (any mix; the format comes from the name):

``.zip``      Citi Bike archives: the yearly ``2016-citibike-tripdata.zip`` (monthly CSVs in folders such as
              ``8_August/201608-citibike-tripdata_1.csv``, or monthly zips nested inside) and the older monthly
              ``201608-citibike-tripdata.zip``, or any zip of CSVs. Every ``.csv`` member is read in natural name
              order, nested zips recursively (spooled to a temporary file); ``__MACOSX/`` and dot files are skipped.
              A zip holding a ``.shp`` is the TLC zone file (``taxi_zones.zip``) and is used as ``zones_zip`` when
              none is given, not read as trips.
``.csv``      (or ``.csv.gz``, ``.csv.bz2``) one CSV of trip records.
``.parquet``  TLC trip records, the synthetic city, or any Parquet with the columns below; streamed one row group at
              a time (whole row groups up to ``2 * batch_rows`` rows: measured faster and lighter than
              ``iter_batches``), and row groups whose statistics put both times outside the span are not read.

Columns are matched case-insensitively, with ``_`` = space: the canonical names; Citi Bike 2013-2016/09 and
2017/04-2020 (``starttime``, ``stoptime``, ``start station latitude`` ...), 2016/10-2017/03 (``Start Time``,
``Stop Time``, ``Start Station Latitude`` ...), 2021+ (``started_at``, ``ended_at``, ``start_lat``, ``start_lng``
...); TLC (``tpep_pickup_datetime``/``lpep_...``/``pickup_datetime``/``Trip_Pickup_DateTime``,
``pickup_latitude``/``Start_Lat`` ...). A file with zone ids (``PULocationID``/``DOLocationID``) but no coordinates
gets the centroids of its zones from the TLC zone shapefile (:func:`zone_centroids`); ids missing from it (264/265 =
unknown) become NaN, which gridding drops.

Times: ISO 8601 with or without fractional seconds (``2016-10-01 00:00:07``, ``2018-01-01 13:50:57.4340``), US
``1/1/2016 00:00:41`` and ``1/1/2015 0:01``, 12-hour ``... 01:02:03 PM``; Parquet timestamps of any unit (a time zone
is converted to New York local time and dropped). A value no format reads becomes null (gridding drops it), but if
more than 1 % of a batch's values cannot be read the file is refused with an example value.

Span filter ``[start, end)`` (either may be None = unbounded): a record is kept when its start **or** its end time
lies in the span, i.e. every record that gives an outflow or an inflow count there. A file (or archive member) whose
name carries a month ``YYYYMM`` / ``YYYY-MM`` (or a year ``YYYY-``) is skipped unless that period overlaps
``[start - lookback, end)``; the look-back (default one day) keeps the previous month's file when the span starts on a
month boundary, for trips that started before the span and end in it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stvfm.data.gridding import GridCounts, GridSpec, grid_trips
from stvfm.datasets.trip_schema import TRIP_COLUMNS, TRIP_SCHEMA
from stvfm.errors import DataError

log = logging.getLogger(__name__)

KINDS = ("trips-citibike", "trips-tlc", "trips")
LOCAL_TZ = "America/New_York"  # TLC and Citi Bike record naive New York local time
TLC_ZONES_CRS = "EPSG:2263"  # NAD83 / New York Long Island (ftUS): the CRS of taxi_zones.shp when it has no .prj

# canonical column -> accepted spellings as the publishers write them (matched ignoring case, "_" vs " ")
ALIASES: dict[str, tuple[str, ...]] = {
    "start_time": (
        "start_time",
        "started_at",
        "starttime",
        "Start Time",
        "tpep_pickup_datetime",
        "lpep_pickup_datetime",
        "pickup_datetime",
        "Trip_Pickup_DateTime",
    ),
    "end_time": (
        "end_time",
        "ended_at",
        "stoptime",
        "Stop Time",
        "tpep_dropoff_datetime",
        "lpep_dropoff_datetime",
        "dropoff_datetime",
        "Trip_Dropoff_DateTime",
    ),
    "start_lat": ("start_lat", "start station latitude", "start_latitude", "pickup_latitude"),
    "start_lon": ("start_lon", "start_lng", "start station longitude", "start_longitude", "pickup_longitude"),
    "end_lat": ("end_lat", "end station latitude", "end_latitude", "dropoff_latitude"),
    "end_lon": ("end_lon", "end_lng", "end station longitude", "end_longitude", "dropoff_longitude"),
}
ZONE_ALIASES: dict[str, tuple[str, ...]] = {"start_zone": ("PULocationID",), "end_zone": ("DOLocationID",)}
# strptime formats tried (in order, each only on the values still unread) when ISO 8601 does not read a whole batch
TIME_FORMATS = (
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%y %H:%M:%S",
    "%m/%d/%y %H:%M",
)
MAX_BAD_TIME_FRACTION = 0.01
_NULLS = ["", "NULL", "null", "NA", "N/A", "NaN", "nan", "\\N"]
_MONTH_RE = re.compile(r"(?<!\d)(20\d{2}|19\d{2})[-_]?(0[1-9]|1[0-2])(?!\d)")
_YEAR_RE = re.compile(r"^(?:[A-Za-z]+-)?(20\d{2}|19\d{2})(?=[-_][A-Za-z])")


# ------------------------------------------------------------------------------------------------ small helpers
def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").strip().lower().split())


def _ns(v: Any, what: str) -> np.datetime64 | None:
    if v is None:
        return None
    try:
        t = np.datetime64(v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v, "ns")
    except (TypeError, ValueError) as e:
        raise DataError(f"'{what}' must be a date/time (ISO string, datetime or datetime64), got {v!r}: {e}") from None
    if np.isnat(t):
        raise DataError(f"'{what}' is not a time: {v!r}")
    return t


def name_period(name: str) -> tuple[np.datetime64, np.datetime64] | None:
    """The month (``YYYYMM``/``YYYY-MM``) or year (``YYYY-...``) a file or archive member name stands for, as a
    half-open ``[first, last)`` span of datetime64[ns]; None when the name carries neither."""
    base = PurePosixPath(name).name
    m = _MONTH_RE.search(base)
    if m:
        first = np.datetime64(f"{m.group(1)}-{m.group(2)}", "M")
        return first.astype("datetime64[ns]"), (first + 1).astype("datetime64[ns]")
    y = _YEAR_RE.match(base)
    if y:
        first = np.datetime64(y.group(1), "Y")
        return first.astype("datetime64[ns]"), (first + 1).astype("datetime64[ns]")
    return None


@dataclass(frozen=True)
class _Span:
    start: np.datetime64 | None
    end: np.datetime64 | None
    lookback: np.timedelta64
    seen: dict[str, int] = field(default_factory=lambda: {"rows": 0, "kept": 0}, compare=False)  # rows read / in span

    def wants(self, name: str) -> bool:
        """Whether the period in ``name`` (if any) can hold records that start or end in the span."""
        per = name_period(name)
        if per is None:
            return True
        lo, hi = per
        return not (
            (self.end is not None and lo >= self.end) or (self.start is not None and hi <= self.start - self.lookback)
        )

    def overlaps(self, lo: Any, hi: Any) -> bool:
        """Whether a closed range [lo, hi] of times (statistics) meets ``[start, end)``."""
        if lo is None or hi is None:
            return True
        lo, hi = np.datetime64(lo, "ns"), np.datetime64(hi, "ns")
        return not ((self.end is not None and lo >= self.end) or (self.start is not None and hi < self.start))


def _mapping(names: Sequence[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, str | None]:
    norm: dict[str, str] = {}
    for n in names:
        norm.setdefault(_norm(n), n)
    return {canon: next((norm[_norm(a)] for a in al if _norm(a) in norm), None) for canon, al in aliases.items()}


@dataclass(frozen=True)
class _Columns:
    """Canonical column -> the file's column; ``zones`` when coordinates come from zone ids."""

    src: dict[str, str]
    zones: bool

    @property
    def file_columns(self) -> list[str]:
        return list(dict.fromkeys(self.src.values()))


def map_columns(
    names: Sequence[str], *, where: str | None = None, kind: str = "trips", have_zones: bool = False
) -> _Columns:
    """Match a file's header to the canonical trip columns (see module doc) or raise a DataError naming the gap."""
    cols = _mapping(names, ALIASES)
    missing_times = [c for c in ("start_time", "end_time") if cols[c] is None]
    coords = [c for c in TRIP_COLUMNS[2:] if cols[c] is None]
    zones = _mapping(names, ZONE_ALIASES)
    hint = {"trips-citibike": "Citi Bike system data", "trips-tlc": "NYC TLC trip records"}.get(kind, "trip records")
    if missing_times or (coords and None in zones.values()):
        no_ids = bool(coords) and None in zones.values()
        gap = missing_times + (coords if no_ids else [])
        accepted = "; ".join(f"{c}: {', '.join(ALIASES[c])}" for c in gap)
        extra = " (or PULocationID/DOLocationID with a TLC zone file for the coordinates)" if no_ids else ""
        raise DataError(
            f"not readable as {hint}: no column for {', '.join(gap)}{extra}. Accepted spellings "
            f"(case ignored, '_' = ' ') - {accepted}. The file's columns are {list(names)}",
            path=where,
        )
    if not coords:
        return _Columns({c: cols[c] for c in TRIP_COLUMNS}, zones=False)  # type: ignore[misc]
    if not have_zones:
        raise DataError(
            f"no column for {', '.join(repr(c) for c in coords)}: the file has taxi-zone ids "
            f"({zones['start_zone']}/{zones['end_zone']}) instead of coordinates, and no zone file was "
            "given: pass zones_zip= (the TLC taxi_zones.zip, "
            "https://d37ci6vzurychx.cloudfront.net/misc/taxi_zones.zip) or list it among the files",
            path=where,
        )
    return _Columns(
        {
            "start_time": cols["start_time"],
            "end_time": cols["end_time"],  # type: ignore[dict-item]
            "start_zone": zones["start_zone"],
            "end_zone": zones["end_zone"],
        },
        zones=True,
    )  # type: ignore


# --------------------------------------------------------------------------------------------------- TLC zones
@dataclass(frozen=True)
class ZoneCentroids:
    """Zone id -> centroid: ``lat[id]``, ``lon[id]`` (WGS84 degrees; NaN for ids the shapefile does not have)."""

    lat: np.ndarray
    lon: np.ndarray
    source: str

    def as_dict(self) -> dict[int, tuple[float, float]]:
        ok = np.flatnonzero(~np.isnan(self.lat))
        return {int(i): (float(self.lat[i]), float(self.lon[i])) for i in ok}

    def lookup(self, ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        a = ids.cast(pa.float64())  # nulls -> NaN below, ids of any int/float type
        v = np.asarray(pc.fill_null(a, float("nan")).to_numpy(zero_copy_only=False), dtype=np.float64)
        ok = np.isfinite(v) & (v >= 0) & (v < self.lat.size) & (v == np.floor(v))
        idx = np.where(ok, v, 0).astype(np.int64)
        lat = np.where(ok, self.lat[idx], np.nan)
        lon = np.where(ok, self.lon[idx], np.nan)
        return lat, lon


def _ring_moments(pts: np.ndarray) -> tuple[float, float, float]:
    """Signed area and first moments (shoelace) of one closed or open ring of (x, y) points."""
    x, y = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    return float(cross.sum() / 2), float(((x + x1) * cross).sum() / 6), float(((y + y1) * cross).sum() / 6)


def _zip_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    out = []
    for info in zf.infolist():
        p = PurePosixPath(info.filename)
        if info.is_dir() or "__MACOSX" in p.parts or p.name.startswith((".", "~$")):
            continue
        out.append(info)
    return out


def _open_zip(path: Path | IO[bytes], where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError("file not found", path=where) from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(
            f"not a readable zip archive (truncated or corrupt? delete it and download it again): {e}", path=where
        ) from None


def _shp_member(zf: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    return next((i for i in _zip_members(zf) if i.filename.lower().endswith(".shp")), None)


def zone_centroids(zones_zip: Path, *, id_field: str = "LocationID") -> ZoneCentroids:
    """Centroids of the TLC taxi zones in ``zones_zip`` (the official ``taxi_zones.zip``: one polygon shapefile,
    field ``LocationID``, NY State Plane feet). Each centroid is the area centroid of all polygons (holes included)
    that carry the id, computed in the shapefile's projected CRS (its ``.prj``; EPSG:2263 if none) and transformed
    to WGS84 with pyproj."""
    import pyproj
    import shapefile  # pyshp

    where = str(zones_zip)
    with _open_zip(Path(zones_zip), where) as zf:
        shp = _shp_member(zf)
        if shp is None:
            raise DataError(
                "no .shp in the zone archive; expected the TLC taxi_zones.zip (taxi_zones.shp/.shx/.dbf/"
                f".prj), found {[i.filename for i in _zip_members(zf)]}",
                path=where,
            )
        stem = shp.filename[:-4]
        names = {i.filename.lower(): i for i in _zip_members(zf)}

        def part(ext: str) -> bytes | None:
            info = names.get((stem + ext).lower())
            return zf.read(info) if info is not None else None

        dbf, shx, prj = part(".dbf"), part(".shx"), part(".prj")
        if dbf is None:
            raise DataError(f"the zone archive has {shp.filename} but no {stem}.dbf (the zone ids)", path=where)
        try:
            reader = shapefile.Reader(
                shp=io.BytesIO(zf.read(shp)), dbf=io.BytesIO(dbf), shx=io.BytesIO(shx) if shx is not None else None
            )
            fields = [f[0] for f in reader.fields[1:]]
            key = next((f for f in fields if f.lower() == id_field.lower()), None)
            if key is None:
                raise DataError(f"the zone shapefile has no field '{id_field}'; fields are {fields}", path=where)
            acc: dict[int, list[float]] = {}
            xmax = 0.0
            for sr in reader.iterShapeRecords():
                zid = sr.record[key]
                if zid is None or not sr.shape.points:
                    continue
                pts = np.asarray(sr.shape.points, dtype=np.float64)[:, :2]
                xmax = max(xmax, float(np.abs(pts).max()))
                bounds = [*list(sr.shape.parts), len(pts)]
                a = acc.setdefault(int(zid), [0.0, 0.0, 0.0])
                for lo, hi in pairwise(bounds):
                    if hi - lo >= 3:
                        m = _ring_moments(pts[lo:hi])
                        a[0] += m[0]
                        a[1] += m[1]
                        a[2] += m[2]
        except DataError:
            raise
        except Exception as e:  # pyshp raises ShapefileException, struct.error ... on a damaged file
            raise DataError(
                f"cannot read the zone shapefile {shp.filename}: {type(e).__name__}: {e}", path=where
            ) from None
    if not acc:
        raise DataError("the zone shapefile holds no polygons", path=where)
    if prj is not None:
        try:
            crs = pyproj.CRS.from_wkt(prj.decode("utf-8", "replace"))
        except pyproj.exceptions.CRSError as e:
            raise DataError(f"cannot interpret {stem}.prj: {e}", path=where) from None
    else:  # no .prj: degrees already, or the TLC's State Plane feet
        crs = pyproj.CRS.from_user_input("EPSG:4326" if xmax <= 360 else TLC_ZONES_CRS)
    n = max(max(acc), 0) + 1
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    for zid, (area, mx, my) in acc.items():
        if zid >= 0 and area != 0:
            x[zid], y[zid] = mx / area, my / area
    if crs.is_geographic:
        lon, lat = x, y
    else:
        tr = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        lon, lat = tr.transform(x, y)
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    bad = ~(np.isfinite(lat) & np.isfinite(lon))
    lat[bad], lon[bad] = np.nan, np.nan
    return ZoneCentroids(lat=lat, lon=lon, source=where)


# ------------------------------------------------------------------------------------------------ time parsing
def parse_times(a: pa.Array | pa.ChunkedArray, *, where: str, column: str) -> pa.Array:
    """Strings or timestamps -> ``timestamp[ns]`` naive New York local time (see module doc)."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    t = a.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            a = pc.local_timestamp(a.cast(pa.timestamp(t.unit, LOCAL_TZ)))
        if t.unit == "ns":
            return a
        lo, hi = (pa.scalar(v, pa.timestamp(t.unit)) for v in (dt.datetime(1678, 1, 1), dt.datetime(2261, 12, 31)))
        a = a.cast(pa.timestamp(t.unit))  # (tz already dropped)
        out_of_range = pc.or_(pc.less(a, lo), pc.greater(a, hi))  # not representable in ns: null (dropped later)
        if pc.any(out_of_range).as_py():
            a = pc.if_else(out_of_range, pa.scalar(None, a.type), a)
        return a.cast(pa.timestamp("ns"))
    if pa.types.is_date(t):
        return a.cast(pa.timestamp("ns"))
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise DataError(f"column '{column}' has type {t}; expected date-time strings or timestamps", path=where)
    a = pc.utf8_trim_whitespace(a)
    a = pc.if_else(pc.equal(a, ""), pa.scalar(None, a.type), a)
    todo = pc.is_valid(a)
    sample = a.filter(todo).slice(0, 64)
    formats = list(TIME_FORMATS)
    try:  # ISO 8601, fractional seconds included; tried on the whole batch only when a sample reads (a failed
        pc.cast(sample, pa.timestamp("ns"))  # cast of a long array costs as much as a successful one)
        return pc.cast(a, pa.timestamp("ns"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for fmt in TIME_FORMATS:  # the format that reads the sample goes first
        if pc.all(pc.is_valid(pc.strptime(sample, format=fmt, unit="ns", error_is_null=True))).as_py():
            formats.remove(fmt)
            formats.insert(0, fmt)
            break
    out = pa.nulls(len(a), pa.timestamp("ns"))
    for fmt in formats:
        got = pc.strptime(a, format=fmt, unit="ns", error_is_null=True)
        out = pc.coalesce(out, got)
        if pc.sum(pc.and_(todo, pc.is_null(out))).as_py() in (0, None):
            return out
    left = pc.and_(todo, pc.is_null(out))
    n_left = pc.sum(left).as_py() or 0
    if n_left:  # last resort for the odd leftovers: pandas' mixed-format parser, on those values only
        import pandas as pd

        idx = np.flatnonzero(left.to_numpy(zero_copy_only=False))
        vals = pd.to_datetime(pd.Series(a.take(pa.array(idx)).to_pylist()), format="mixed", errors="coerce")
        filled = out.to_numpy(zero_copy_only=False).astype("datetime64[ns]")
        filled[idx] = vals.to_numpy(dtype="datetime64[ns]")
        out = pa.array(filled, pa.timestamp("ns"), mask=np.isnat(filled))
        bad = np.isnat(filled[idx])
        n_bad = int(bad.sum())
        n_all = int(pc.sum(todo).as_py() or 0)
        if n_bad > MAX_BAD_TIME_FRACTION * max(n_all, 1):
            example = a[int(idx[np.argmax(bad)])].as_py()
            raise DataError(
                f"column '{column}': {n_bad} of {n_all} times in a batch cannot be read "
                f"(e.g. {example!r}); "
                f"readable forms are ISO 8601 and {', '.join(TIME_FORMATS)}",
                path=where,
            )
    return out


# ------------------------------------------------------------------------------------------ batch conversion
def _f64(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    a = a.cast(pa.float64())
    return pc.fill_null(a, float("nan")) if a.null_count else a


Zones = Callable[[], "ZoneCentroids"] | None  # loads (once) the zone centroids; None: no zone file


def _canonical(rb: pa.RecordBatch, cols: _Columns, span: _Span, zones: Zones, where: str) -> pa.RecordBatch | None:
    """One batch of the file's columns -> a canonical RecordBatch of the records in the span (None when empty)."""
    st = parse_times(rb.column(cols.src["start_time"]), where=where, column=cols.src["start_time"])
    en = parse_times(rb.column(cols.src["end_time"]), where=where, column=cols.src["end_time"])
    span.seen["rows"] += len(st)
    keep = None
    if span.start is not None or span.end is not None:

        def inside(t: pa.Array) -> pa.Array:
            m = pc.is_valid(t)
            if span.start is not None:
                m = pc.and_kleene(m, pc.greater_equal(t, pa.scalar(span.start, pa.timestamp("ns"))))
            if span.end is not None:
                m = pc.and_kleene(m, pc.less(t, pa.scalar(span.end, pa.timestamp("ns"))))
            return pc.fill_null(m, False)

        keep = pc.or_(inside(st), inside(en))
        n = pc.sum(keep).as_py() or 0
        if n == 0:
            return None
        if n == len(st):
            keep = None
    if keep is not None and cols.zones:
        rb = rb.filter(keep)  # look up only the zones of the records kept
    if cols.zones:
        assert zones is not None
        z = zones()
        slat, slon = z.lookup(rb.column(cols.src["start_zone"]))
        elat, elon = z.lookup(rb.column(cols.src["end_zone"]))
        coords = [pa.array(slat), pa.array(slon), pa.array(elat), pa.array(elon)]
        if keep is not None:
            st, en = st.filter(keep), en.filter(keep)
        out = pa.RecordBatch.from_arrays([st, en, *coords], schema=TRIP_SCHEMA)
    else:  # one filter over the six output columns (a copy of each, once)
        out = pa.RecordBatch.from_arrays(
            [st, en, *(_f64(rb.column(cols.src[c])) for c in TRIP_COLUMNS[2:])], schema=TRIP_SCHEMA
        )
        if keep is not None:
            out = out.filter(keep)
    if out.num_rows == 0:
        return None
    span.seen["kept"] += out.num_rows
    return out


# ------------------------------------------------------------------------------------------------ file readers
def _csv_header(stream: IO[bytes], where: str) -> list[str]:
    line = stream.readline(1 << 20)
    text = line.decode("utf-8-sig", "replace").strip("\r\n")
    if not text:
        raise DataError("empty CSV (no header line)", path=where)
    return [n.strip() for n in next(csv.reader([text]))]


def _read_csv(
    opener: Callable[[], Any], where: str, kind: str, span: _Span, zones: Zones, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Stream one CSV; ``opener()`` gives a fresh binary stream of it (read twice: header, then the data)."""
    import pyarrow.csv as pcsv

    with opener() as f:
        names = _csv_header(f, where)
    cols = map_columns(names, where=where, kind=kind, have_zones=zones is not None)
    types = {cols.src[c]: pa.string() for c in ("start_time", "end_time")}
    if not cols.zones:
        types.update({cols.src[c]: pa.float64() for c in TRIP_COLUMNS[2:]})
    block = int(min(max(batch_rows * 160, 1 << 20), 64 << 20))  # ~160 bytes a Citi Bike row

    def batches() -> Iterator[pa.RecordBatch]:
        with opener() as f:
            yield from pcsv.open_csv(
                f,
                read_options=pcsv.ReadOptions(block_size=block),
                convert_options=pcsv.ConvertOptions(
                    column_types=types, include_columns=cols.file_columns, null_values=_NULLS, strings_can_be_null=True
                ),
            )

    yield from _converted(batches(), cols, span, zones, where, "CSV")


def _read_parquet(
    path: Path | IO[bytes], where: str, kind: str, span: _Span, zones: Zones, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise DataError("file not found", path=where) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet file (truncated or corrupt?): {e}", path=where) from None
    names = pf.schema_arrow.names
    cols = map_columns(names, where=where, kind=kind, have_zones=zones is not None)
    index = {n: i for i, n in enumerate(names)}

    def batches() -> Iterator[pa.RecordBatch]:
        for g in range(pf.num_row_groups):
            if not _row_group_wanted(pf, g, [index[cols.src["start_time"]], index[cols.src["end_time"]]], span):
                continue
            # a whole row group in one read when it is not much larger than a batch: on 10M records 0.6 s / 190 MB
            # peak RSS against 1.8 s / 380 MB for iter_batches (3.3 s / 740 MB with pre_buffer)
            if pf.metadata.row_group(g).num_rows <= 2 * batch_rows:
                yield from pf.read_row_group(g, columns=cols.file_columns).to_batches()
            else:
                yield from pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=cols.file_columns)

    yield from _converted(batches(), cols, span, zones, where, "Parquet data")


def _converted(
    batches: Iterable[pa.RecordBatch], cols: _Columns, span: _Span, zones: Zones, where: str, what: str
) -> Iterator[pa.RecordBatch]:
    """The canonical batches (in the span) of one file's batches; a read error becomes a DataError naming the file."""
    try:
        for rb in batches:
            out = _canonical(rb, cols, span, zones, where)
            if out is not None:
                yield out
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(
            f"cannot read the {what} (truncated or corrupt?): {type(e).__name__}: {e}", path=where
        ) from None


def _row_group_wanted(pf, g: int, time_cols: list[int], span: _Span) -> bool:
    """False only when the row group's statistics put both time columns wholly outside the span."""
    if span.start is None and span.end is None:
        return True
    rg = pf.metadata.row_group(g)
    for i in time_cols:
        try:
            col = pf.schema_arrow.field(i)
            meta = rg.column(i)
        except (IndexError, KeyError):
            return True
        if meta.path_in_schema != col.name:  # nested columns shift the leaf indices: no shortcut
            return True
        stats = meta.statistics
        if stats is None or not stats.has_min_max or not pa.types.is_timestamp(col.type) or col.type.tz is not None:
            return True
        if span.overlaps(stats.min, stats.max):
            return True
    return False


def _iter_zip(
    zf: zipfile.ZipFile, where: str, kind: str, span: _Span, zones: Zones, batch_rows: int, depth: int = 0
) -> Iterator[pa.RecordBatch]:
    members = sorted(_zip_members(zf), key=lambda i: _natural(i.filename))
    readable = [i for i in members if i.filename.lower().endswith((".csv", ".zip", ".parquet"))]
    if not readable:
        raise DataError(
            f"the archive holds no .csv (or nested .zip) trip files; members: {[i.filename for i in members][:20]}",
            path=where,
        )
    for info in readable:
        name = info.filename
        inner = f"{where}!{name}"
        if not span.wants(name):
            log.debug("skipping %s: outside the span", inner)
            continue
        low = name.lower()
        if low.endswith(".csv"):
            yield from _read_csv(
                lambda info=info, inner=inner: _zip_open(zf, info, inner), inner, kind, span, zones, batch_rows
            )
        elif depth >= 3:
            raise DataError("zip archives nested more than 3 deep", path=inner)
        else:  # a nested .zip / .parquet: spool to a seekable temporary file first
            with tempfile.TemporaryFile(suffix=PurePosixPath(name).suffix) as tmp:
                with _zip_open(zf, info, inner) as src:
                    shutil.copyfileobj(src, tmp, 1 << 22)
                tmp.seek(0)
                if low.endswith(".zip"):
                    with _open_zip(tmp, inner) as sub:
                        if _shp_member(sub) is not None:
                            continue
                        yield from _iter_zip(sub, inner, kind, span, zones, batch_rows, depth + 1)
                else:
                    yield from _read_parquet(tmp, inner, kind, span, zones, batch_rows)


@contextlib.contextmanager
def _zip_open(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    try:
        with zf.open(info) as f:
            yield f
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"cannot read this archive member (truncated or corrupt zip?): {type(e).__name__}: {e}", path=where
        ) from None


def _natural(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``rows`` rows: large ones sliced (zero-copy) and passed on as they come, runs of small ones
    (at most half of ``rows`` each) joined up to ``rows``; so no more than one batch's worth is held here."""
    buf: list[pa.RecordBatch] = []
    n = 0

    def flush() -> pa.RecordBatch:
        if len(buf) == 1:
            return buf[0]
        return pa.Table.from_batches(buf, schema=TRIP_SCHEMA).combine_chunks().to_batches()[0]

    for b in batches:
        for off in range(0, b.num_rows, rows):
            piece = b.slice(off, rows)
            if n and (n + piece.num_rows > rows or piece.num_rows > rows // 2):
                yield flush()
                buf, n = [], 0
            if piece.num_rows > rows // 2:
                yield piece
                continue
            buf.append(piece)
            n += piece.num_rows
    if n:
        yield flush()


def is_zone_file(path: Path) -> bool:
    """True for a ``.zip`` holding a ``.shp`` (the TLC ``taxi_zones.zip``)."""
    if not str(path).lower().endswith(".zip") or not Path(path).is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return _shp_member(zf) is not None
    except (zipfile.BadZipFile, OSError):
        return False


# ------------------------------------------------------------------------------------------------- public API
def iter_trip_batches(
    files: Sequence[Path | str] | Path | str,
    kind: str = "trips",
    *,
    start: Any = None,
    end: Any = None,
    zones_zip: Path | None = None,
    batch_rows: int = 1_000_000,
    lookback: dt.timedelta = dt.timedelta(days=1),
    dataset: str | None = None,
    seen: dict[str, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the trip records in ``files`` (one path or several) as canonical ``pyarrow.RecordBatch`` es
    (:data:`TRIP_SCHEMA`) of at most ``batch_rows`` rows, keeping the records that start or end in ``[start, end)``
    (``None`` = unbounded).

    ``kind``: ``trips-citibike`` (Citi Bike zips/CSVs), ``trips-tlc`` (TLC Parquet, plus its ``taxi_zones.zip``)
    or ``trips`` (any trip records with the accepted column spellings); it only words the messages. The zone file is
    ``zones_zip`` or else a ``.zip`` with a ``.shp`` among ``files``; it is needed only for files with zone ids and
    no coordinates. ``seen`` (a dict) receives ``rows`` (records read) and ``kept`` (records in the span).
    Raises :class:`~stvfm.errors.DataError` (naming the dataset, file or archive member, and what is wrong).
    """
    if kind not in KINDS:
        raise DataError(f"unknown trip reader kind '{kind}'; known: {', '.join(KINDS)}", dataset=dataset)
    if batch_rows < 1:
        raise DataError(f"batch_rows must be >= 1, got {batch_rows}", dataset=dataset)
    span = _Span(
        _ns(start, "start"),
        _ns(end, "end"),
        np.timedelta64(int(lookback.total_seconds() * 1e9), "ns"),
        seen={"rows": 0, "kept": 0} if seen is None else seen,
    )
    span.seen.setdefault("rows", 0)
    span.seen.setdefault("kept", 0)
    if span.start is not None and span.end is not None and span.end <= span.start:
        raise DataError(f"empty span: end {span.end} is not after start {span.start}", dataset=dataset)
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    zone_files = [p for p in paths if is_zone_file(p)]
    trips = [p for p in paths if p not in zone_files]
    if not trips:
        raise DataError(f"no trip record files among {[p.name for p in paths]}", dataset=dataset)
    zfile = Path(zones_zip) if zones_zip is not None else (zone_files[0] if zone_files else None)
    cache: list[ZoneCentroids] = []

    def load_zones() -> ZoneCentroids:  # read the shapefile only when a file has zone ids
        if not cache:
            cache.append(zone_centroids(zfile))  # type: ignore[arg-type]
        return cache[0]

    zones: Zones = load_zones if zfile is not None else None

    def gen() -> Iterator[pa.RecordBatch]:
        for p in trips:
            where = str(p)
            if not span.wants(p.name):
                log.info("skipping %s: its period is outside the span", p.name)
                continue
            if not p.exists():
                raise DataError("file not found", path=where)
            low = p.name.lower()
            if low.endswith(".zip"):
                with _open_zip(p, where) as zf:
                    yield from _iter_zip(zf, where, kind, span, zones, batch_rows)
            elif low.endswith((".parquet", ".pq")):
                yield from _read_parquet(p, where, kind, span, zones, batch_rows)
            elif low.endswith((".csv", ".csv.gz", ".csv.bz2")):
                yield from _read_csv(lambda p=p: _open_text_file(p), where, kind, span, zones, batch_rows)
            else:
                raise DataError(
                    f"unknown trip file type '{p.name}'; use .zip (Citi Bike), .csv or .parquet", path=where
                )

    try:
        yield from _rebatch(gen(), batch_rows)
    except DataError as e:
        if dataset and e.dataset is None:  # name the dataset too, keep the file
            msg = str(e)
            prefix = f"file '{e.path}': "
            raise DataError(
                msg[len(prefix) :] if e.path and msg.startswith(prefix) else msg, dataset=dataset, path=e.path
            ) from None
        raise


def _open_text_file(p: Path) -> IO[bytes]:
    """A binary stream of a CSV, decompressing ``.gz`` / ``.bz2``."""
    low = p.name.lower()
    if low.endswith(".gz"):
        import gzip

        return gzip.open(p, "rb")  # type: ignore[return-value]
    if low.endswith(".bz2"):
        import bz2

        return bz2.open(p, "rb")  # type: ignore[return-value]
    return open(p, "rb")


def read_trip_table(files: Sequence[Path | str], kind: str, **kw: Any) -> pa.Table:
    """All batches of :func:`iter_trip_batches` as one Table (for small inputs and tests)."""
    return pa.Table.from_batches(list(iter_trip_batches(files, kind, **kw)), schema=TRIP_SCHEMA)


def grid_trip_files(
    files: Sequence[Path | str],
    spec: GridSpec,
    *,
    kind: str = "trips",
    dataset: str | None = None,
    zones_zip: Path | None = None,
    batch_rows: int = 1_000_000,
) -> GridCounts:
    """Grid the trip records of ``files`` on ``spec`` (records that start or end in its span, see
    :func:`iter_trip_batches`); refuses (DataError) files with no records and records that all miss the grid."""
    end = spec.start + np.timedelta64(spec.steps * spec.interval_ns, "ns")
    seen: dict[str, int] = {}
    g = grid_trips(
        iter_trip_batches(
            files,
            kind,
            start=spec.start,
            end=end,
            zones_zip=zones_zip,
            batch_rows=batch_rows,
            dataset=dataset,
            seen=seen,
        ),
        spec,
    )
    first = str(files[0])
    span = f"{np.datetime_as_string(spec.start, unit='s')}..{np.datetime_as_string(end, unit='s')}"
    if seen.get("rows", 0) == 0:
        raise DataError(
            "no trip records in the input (empty file, or no file of the span?)", dataset=dataset, path=first
        )
    if g.records == 0:
        raise DataError(
            f"all {seen['rows']} trip records read fall outside the span {span} (neither start nor end "
            "time inside); fix start/end (manifest.json or the local_sources entry)",
            dataset=dataset,
            path=first,
        )
    if not any(g.counted.values()):
        raise DataError(
            f"all {g.records} trip records fall outside the grid: 0 endpoints inside bbox "
            f"{[float(v) for v in spec.bbox]} (lat_min, lon_min, lat_max, lon_max) and span {span} "
            f"(dropped: {dict(g.dropped)}); fix bbox/start/end (manifest.json or the local_sources entry)",
            dataset=dataset,
            path=first,
        )
    return g
