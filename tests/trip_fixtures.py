"""Trip-record fixtures in the publishers' own layouts, for the ``<name>-trips`` datasets.

:func:`citibike_year` writes ``<year>-citibike-tripdata.zip`` as Citi Bike's s3 bucket has it: one folder per month
(``8_August/201608-citibike-tripdata_1.csv``), each CSV with the 2016 (Jan-Sep) header (quoted, 15 columns: trip
duration, US ``8/1/2016 00:01:22`` times, station ids, names and coordinates, bike id, user type, birth year, gender)
and a ``__MACOSX/`` entry. The trips are the synthetic city's (:mod:`stvfm.datasets.synthetic`, daily and weekly
cycles, hotspots, bursts), placed on the dataset's grid box: the city's box is mapped linearly onto ``bbox`` so its
cells land on the dataset's cells and the gridded series carries the city's signal.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from stvfm.config import SyntheticConfig
from stvfm.datasets.registry import get_spec
from stvfm.datasets.synthetic import generate_trips, synthetic_bbox

HEADER_2016 = (
    "tripduration",
    "starttime",
    "stoptime",
    "start station id",
    "start station name",
    "start station latitude",
    "start station longitude",
    "end station id",
    "end station name",
    "end station latitude",
    "end station longitude",
    "bikeid",
    "usertype",
    "birth year",
    "gender",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _us_times(ns: np.ndarray) -> pa.Array:
    """``8/1/2016 00:01:22`` (month and day without leading zeros), as Citi Bike wrote Jan-Sep 2016."""
    t = pa.array(ns.astype("datetime64[s]"))
    month = pc.cast(pc.month(t), pa.string())
    day = pc.cast(pc.day(t), pa.string())
    rest = pc.strftime(t, format="%Y %H:%M:%S")
    return pc.binary_join_element_wise(month, "/", day, "/", rest, "")


def citibike_year(
    mirror: Path,
    dataset: str = "bikenyc1-trips",
    *,
    trips_per_hour: float = 30.0,
    seed: int = 0,
    span_days: int | None = None,
) -> Path:
    """Write the Citi Bike yearly archive the ``dataset`` (a ``bikenyc*-trips`` name) downloads, for its span, into
    ``mirror``; return its path."""
    spec = get_spec(dataset)
    src = next(s for s in spec.sources if s.kind == "trips-citibike")
    city = dataclasses.replace(spec, name="fixture", kind="synthetic")
    mirror.mkdir(parents=True, exist_ok=True)
    tmp = mirror / f".{dataset}-city.parquet"
    generate_trips(
        city,
        SyntheticConfig(seed=seed, trips_per_step=trips_per_hour * spec.interval_minutes / 60, span_days=span_days),
        tmp,
    )
    t = pq.read_table(tmp)
    tmp.unlink()
    lat0, lon0, lat1, lon1 = synthetic_bbox(spec.grid)
    b0, b1, b2, b3 = spec.bbox

    def place(col: str, lo: float, hi: float, to_lo: float, to_hi: float) -> np.ndarray:
        v = t.column(col).to_numpy()
        return np.round(to_lo + (v - lo) / (hi - lo) * (to_hi - to_lo), 8)

    st = t.column("start_time").to_numpy().astype("datetime64[ns]")
    en = t.column("end_time").to_numpy().astype("datetime64[ns]")
    n = len(st)
    rng = np.random.default_rng(seed)
    sid, eid = rng.integers(72, 3500, n), rng.integers(72, 3500, n)
    table = pa.table(
        {
            "tripduration": ((en - st) // np.timedelta64(1, "s")).astype(np.int64),
            "starttime": _us_times(st),
            "stoptime": _us_times(en),
            "start station id": sid,
            "start station name": pa.array([f"Station {i}" for i in sid]),
            "start station latitude": place("start_lat", lat0, lat1, b0, b2),
            "start station longitude": place("start_lon", lon0, lon1, b1, b3),
            "end station id": eid,
            "end station name": pa.array([f"Station {i}" for i in eid]),
            "end station latitude": place("end_lat", lat0, lat1, b0, b2),
            "end station longitude": place("end_lon", lon0, lon1, b1, b3),
            "bikeid": rng.integers(14529, 27000, n),
            "usertype": np.where(rng.random(n) < 0.9, "Subscriber", "Customer"),
            "birth year": pa.array(np.where(rng.random(n) < 0.9, rng.integers(1950, 2000, n), -1)).cast(pa.string()),
            "gender": rng.integers(0, 3, n),
        }
    )
    table = table.set_column(13, "birth year", pc.if_else(pc.equal(table.column(13), "-1"), "", table.column(13)))
    month = st.astype("datetime64[M]")
    out = mirror / src.filename
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for m in np.unique(month):
            part = table.filter(pa.array(month == m))
            y, mm = str(m)[:4], int(str(m)[5:7])
            buf = io.BytesIO()
            pcsv.write_csv(part, buf, pcsv.WriteOptions(include_header=False, quoting_style="all_valid"))
            header = ",".join(f'"{c}"' for c in HEADER_2016) + "\n"
            z.writestr(f"{mm}_{MONTHS[mm - 1]}/{y}{mm:02d}-citibike-tripdata_1.csv", header.encode() + buf.getvalue())
        z.writestr(f"__MACOSX/{mm}_{MONTHS[mm - 1]}/._{y}{mm:02d}-citibike-tripdata_1.csv", b"\x00\x05\x16\x07")
    return out
