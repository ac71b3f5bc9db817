"""Gridding trip records: exact counts on hand-built records, drops, streaming == in-memory, CSV variants."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stvfm.data.gridding import GridSpec, grid_arrays, grid_trips
from stvfm.data.readers import read_raw
from stvfm.data.trips import iter_trip_batches, map_columns
from stvfm.errors import DataError

BBOX = (40.0, -74.0, 41.0, -73.0)  # 2x2 grid below: rows split at lat 40.5, cols at lon -73.5
SPEC = GridSpec.from_span(BBOX, (2, 2), "2024-01-01T00:00", "2024-01-01T03:00", 60)  # T = 3


def ts(s):
    return np.datetime64(s, "ns")


def records(rows):
    cols = list(zip(*rows, strict=True))
    return {
        "start_time": np.array(cols[0], "datetime64[ns]"),
        "end_time": np.array(cols[1], "datetime64[ns]"),
        "start_lat": np.array(cols[2], float),
        "start_lon": np.array(cols[3], float),
        "end_lat": np.array(cols[4], float),
        "end_lon": np.array(cols[5], float),
    }


HAND = [
    # start time, end time, start lat/lon, end lat/lon
    ("2024-01-01T00:10", "2024-01-01T00:50", 40.9, -73.9, 40.1, -73.1),  # out (t0,row0,col0); in (t0,row1,col1)
    ("2024-01-01T00:59", "2024-01-01T01:05", 40.9, -73.9, 40.9, -73.9),  # out (t0,r0,c0); in (t1,r0,c0)
    ("2024-01-01T02:30", "2024-01-01T03:10", 40.2, -73.8, 40.2, -73.8),  # out (t2,r1,c0); in: after span -> dropped
    (
        "2023-12-31T23:50",
        "2024-01-01T00:20",
        42.0,
        -73.9,
        40.6,
        -73.4,
    ),  # out: before span+outside -> dropped; in (t0,r0,c1)
    (
        "2024-01-01T01:00",
        "2024-01-01T01:30",
        40.0,
        -73.0,
        41.0,
        -74.0,
    ),  # bbox corners: lat_min/lon_max -> (r1,c1); lat_max/lon_min -> (r0,c0)
    ("2024-01-01T01:30", "2024-01-01T01:40", np.nan, -73.5, 40.5, -75.0),  # NaN -> dropped; lon outside -> dropped
]


def expected():
    e = np.zeros((3, 2, 2, 2), np.int64)  # (T, H, W, [in, out])
    e[0, 1, 1, 0] += 1
    e[0, 0, 0, 1] += 1
    e[1, 0, 0, 0] += 1
    e[0, 0, 0, 1] += 1
    e[2, 1, 0, 1] += 1
    e[0, 0, 1, 0] += 1
    e[1, 0, 0, 0] += 1
    e[1, 1, 1, 1] += 1
    return e


def test_hand_built_records_exact():
    g = grid_arrays(records(HAND), SPEC)
    assert g.counts.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(g.counts, expected())
    assert g.records == 6
    assert g.counted == {"inflow": 4, "outflow": 4}
    assert g.dropped == {"inflow": 2, "outflow": 2}


def test_time_bins_are_half_open():
    s = GridSpec.from_span(BBOX, (1, 1), "2024-01-01T00:00", "2024-01-01T02:00", 60)
    r = records(
        [
            ("2024-01-01T00:00", "2024-01-01T01:00", 40.5, -73.5, 40.5, -73.5),
            ("2024-01-01T01:59:59", "2024-01-01T02:00", 40.5, -73.5, 40.5, -73.5),
        ]
    )
    g = grid_arrays(r, s)
    np.testing.assert_array_equal(g.counts[:, 0, 0, 1], [1, 1])  # outflow at 00:00 -> bin 0, 01:59:59 -> bin 1
    np.testing.assert_array_equal(g.counts[:, 0, 0, 0], [0, 1])  # inflow at 01:00 -> bin 1, 02:00 = end -> dropped
    assert g.dropped == {"inflow": 1, "outflow": 0}


def _random_records(n, seed=0):
    rng = np.random.default_rng(seed)
    st = ts("2024-01-01T00:00") + rng.integers(-600, 4 * 3600, n).astype("timedelta64[s]")
    et = st + rng.integers(0, 3600, n).astype("timedelta64[s]")
    return {
        "start_time": st.astype("datetime64[ns]"),
        "end_time": et.astype("datetime64[ns]"),
        "start_lat": rng.uniform(39.9, 41.1, n),
        "start_lon": rng.uniform(-74.1, -72.9, n),
        "end_lat": rng.uniform(39.9, 41.1, n),
        "end_lon": rng.uniform(-74.1, -72.9, n),
    }


def test_streaming_equals_in_memory(tmp_path):
    spec = GridSpec.from_span(BBOX, (4, 3), "2024-01-01T00:00", "2024-01-01T04:00", 30)
    rec = _random_records(5000)
    whole = grid_arrays(rec, spec)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(rec), path, row_group_size=700)  # 8 row groups
    assert pq.ParquetFile(path).num_row_groups == 8
    streamed = grid_trips(iter_trip_batches(path, batch_rows=300), spec)
    np.testing.assert_array_equal(streamed.counts, whole.counts)
    assert streamed.dropped == whole.dropped and streamed.records == 5000
    assert whole.counts.sum() == whole.counted["inflow"] + whole.counted["outflow"]
    assert 0 < whole.dropped["inflow"] < 5000
    # a brute-force per-record reference
    ref = np.zeros_like(whole.counts)
    for i in range(5000):
        for c, (t, la, lo) in enumerate([("end_time", "end_lat", "end_lon"), ("start_time", "start_lat", "start_lon")]):
            k = (rec[t][i] - spec.start) // np.timedelta64(30, "m")
            la_, lo_ = rec[la][i], rec[lo][i]
            if 0 <= k < spec.steps and 40 <= la_ <= 41 and -74 <= lo_ <= -73:
                ref[int(k), min(int((41 - la_) * 4), 3), min(int((lo_ + 74) * 3), 2), c] += 1
    np.testing.assert_array_equal(whole.counts, ref)


CITIBIKE_OLD = (
    "tripduration,starttime,stoptime,start station id,start station name,start station latitude,"
    "start station longitude,end station id,end station name,end station latitude,end station longitude\n"
    '600,2014-08-01 00:10:00,2014-08-01 00:50:00,1,"A",40.9,-73.9,2,"B",40.1,-73.1\n'
    '60,8/1/2014 00:59:00,8/1/2014 01:05:00,1,"A",40.9,-73.9,1,"A",40.9,-73.9\n'
)
CITIBIKE_NEW = (
    "ride_id,rideable_type,started_at,ended_at,start_station_name,start_station_id,end_station_name,"
    "end_station_id,start_lat,start_lng,end_lat,end_lng,member_casual\n"
    "x1,classic_bike,2014-08-01 00:10:00,2014-08-01 00:50:00,A,1,B,2,40.9,-73.9,40.1,-73.1,member\n"
    "x2,classic_bike,2014-08-01 00:59:00,2014-08-01 01:05:00,A,1,A,1,40.9,-73.9,40.9,-73.9,casual\n"
)


@pytest.mark.parametrize("text", [CITIBIKE_OLD, CITIBIKE_NEW], ids=["citibike-2014", "citibike-2021"])
def test_citibike_csv_variants(tmp_path, text):
    p = tmp_path / "trips.csv"
    p.write_text(text)
    res = read_raw(
        [p],
        "trips",
        dataset="cb",
        interval_minutes=60,
        grid=(2, 2),
        start="2014-08-01T00:00",
        end="2014-08-01T03:00",
        bbox=BBOX,
    )
    flow = res.ds["flow"].values
    assert flow.shape == (3, 2, 2, 2) and list(res.ds["channel"].values) == ["inflow", "outflow"]
    assert flow[0, 1, 1, 0] == 1 and flow[1, 0, 0, 0] == 1 and flow[0, 0, 0, 1] == 2 and flow.sum() == 4
    assert res.ds.attrs["bbox"] == list(BBOX)


def test_tlc_columns_map():
    m = map_columns(
        [
            "VendorID",
            "tpep_pickup_datetime",
            "tpep_dropoff_datetime",
            "pickup_longitude",
            "pickup_latitude",
            "dropoff_longitude",
            "dropoff_latitude",
        ]
    )
    assert m.src["start_time"] == "tpep_pickup_datetime" and m.src["end_lon"] == "dropoff_longitude"


def test_zone_only_tlc_refused(tmp_path):
    p = tmp_path / "yellow.csv"
    p.write_text(
        "tpep_pickup_datetime,tpep_dropoff_datetime,PULocationID,DOLocationID\n2020-01-01 00:00:00,"
        "2020-01-01 00:10:00,1,2\n"
    )
    with pytest.raises(DataError, match=r"no column for 'start_lat'.*zone ids"):
        list(iter_trip_batches(p, dataset="tlc"))


def test_truncated_parquet_refused(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table(_random_records(100)), p)
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"dataset 'x', file .*t\.parquet.*truncated or corrupt"):
        list(iter_trip_batches(p, dataset="x"))


def test_citibike_zip_of_monthly_csvs(tmp_path):
    import zipfile

    p = tmp_path / "2014-citibike-tripdata.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("8_August/201408-citibike-tripdata_1.csv", CITIBIKE_OLD)
        z.writestr("8_August/201408-citibike-tripdata_2.csv", CITIBIKE_NEW)
        z.writestr("__MACOSX/8_August/._201408-citibike-tripdata_1.csv", "junk")
    for kind in ("trips", "trips-citibike"):  # one reader (stvfm.data.trips); the kind only words its messages
        res = read_raw(
            [p],
            kind,
            dataset="cb",
            interval_minutes=60,
            grid=(2, 2),
            start="2014-08-01T00:00",
            end="2014-08-01T03:00",
            bbox=BBOX,
        )
        assert res.ds["flow"].values.sum() == 8 and res.records == {"inflow": 4, "outflow": 4}
        assert res.ds["flow"].values[0, 0, 0, 1] == 4 and res.ds["flow"].values[1, 0, 0, 0] == 2
