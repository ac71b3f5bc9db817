"""The trip-record reader (stvfm.data.trips) on tiny files written in the publishers' real formats."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stvfm.data.gridding import GridSpec, grid_trips
from stvfm.data.trips import (
    TRIP_SCHEMA,
    grid_trip_files,
    iter_trip_batches,
    name_period,
    read_trip_table,
    zone_centroids,
)
from stvfm.errors import DataError

# --------------------------------------------------------------------------------------------- Citi Bike files
# 2013 - 2016/09 (and 2017/04 - 2020): lower-case headers, US dates in 2014-2016
OLD_HEADER = (
    '"tripduration","starttime","stoptime","start station id","start station name","start station latitude",'
    '"start station longitude","end station id","end station name","end station latitude",'
    '"end station longitude","bikeid","usertype","birth year","gender"'
)
JULY = (
    OLD_HEADER
    + "\n"
    + "\n".join(
        [
            '"600","7/1/2016 00:00:41","7/1/2016 00:10:41","72","W 52 St & 11 Ave","40.76727216","-73.99392888","505",'
            '"6 Ave & W 33 St","40.74901271","-73.98848395","17109","Customer","","0"',
            '"300","7/15/2016 8:05","7/15/2016 8:10","79","Franklin St & W Broadway","40.71911552","-74.00666661",'
            '"527",'
            '"E 33 St & 2 Ave","40.74402263","-73.97674683","24000","Subscriber","1980","1"',
        ]
    )
)
# 2016/10 - 2017/03: Title Case headers, ISO times
OCT_HEADER = (
    "Trip Duration,Start Time,Stop Time,Start Station ID,Start Station Name,Start Station Latitude,"
    "Start Station Longitude,End Station ID,End Station Name,End Station Latitude,End Station Longitude,"
    "Bike ID,User Type,Birth Year,Gender"
)
OCTOBER = (
    OCT_HEADER
    + "\n"
    + "\n".join(
        [
            "328,2016-10-01 00:00:07,2016-10-01 00:05:35,471,Grand St & Havemeyer St,40.71286844,-73.95698119,3077,"
            "Stagg St & Union Ave,40.70867481,-73.95109081,25254,Subscriber,1992,1",
            "900,2016-10-31 23:55:00,2016-11-01 00:10:00,3077,Stagg St & Union Ave,40.70867481,-73.95109081,471,"
            "Grand St & Havemeyer St,40.71286844,-73.95698119,25255,Subscriber,1990,2",
        ]
    )
)
# 2021+: ride ids, started_at/ended_at with fractions, start_lng, empty coordinates possible
NOV = (
    "ride_id,rideable_type,started_at,ended_at,start_station_name,start_station_id,end_station_name,end_station_id,"
    "start_lat,start_lng,end_lat,end_lng,member_casual\n"
    "A1,classic_bike,2016-11-02 10:00:00.123,2016-11-02 10:20:00.456,X,1,Y,2,40.75,-73.98,40.76,-73.97,member\n"
    "A2,electric_bike,2016-11-03 11:00:00,2016-11-03 11:05:00,X,1,,,40.75,-73.98,,,casual\n"
)


def _zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _citibike_year(tmp: Path, july: str = JULY) -> Path:
    """A yearly archive as on s3://tripdata: month folders of CSVs, one month as a nested monthly zip, mac junk."""
    p = tmp / "2016-citibike-tripdata.zip"
    p.write_bytes(
        _zip_bytes(
            {
                "2016-citibike-tripdata/7_July/201607-citibike-tripdata_1.csv": july,
                "2016-citibike-tripdata/10_October/201610-citibike-tripdata_1.csv": "\ufeff" + OCTOBER,  # with a BOM
                "2016-citibike-tripdata/11_November/201611-citibike-tripdata.zip": _zip_bytes(
                    {"201611-citibike-tripdata.csv": NOV}
                ),
                "__MACOSX/2016-citibike-tripdata/._201607-citibike-tripdata_1.csv": b"\x00\x05\x16\x07junk",
            }
        )
    )
    return p


def _rows(t: pa.Table) -> list[tuple]:
    d = t.to_pydict()
    return [
        tuple(str(np.datetime64(d[c][i], "s")) if c.endswith("time") else d[c][i] for c in TRIP_SCHEMA.names)
        for i in range(t.num_rows)
    ]


def test_citibike_yearly_zip_all_column_variants(tmp_path):
    t = read_trip_table([_citibike_year(tmp_path)], "trips-citibike", start="2016-01-01", end="2017-01-01")
    assert t.schema == TRIP_SCHEMA
    rows = _rows(t)
    assert [r[:2] for r in rows] == [
        ("2016-07-01T00:00:41", "2016-07-01T00:10:41"),
        ("2016-07-15T08:05:00", "2016-07-15T08:10:00"),
        ("2016-10-01T00:00:07", "2016-10-01T00:05:35"),
        ("2016-10-31T23:55:00", "2016-11-01T00:10:00"),
        ("2016-11-02T10:00:00", "2016-11-02T10:20:00"),
        ("2016-11-03T11:00:00", "2016-11-03T11:05:00"),
    ]
    assert rows[0][2:] == (40.76727216, -73.99392888, 40.74901271, -73.98848395)
    assert rows[2][2:] == (40.71286844, -73.95698119, 40.70867481, -73.95109081)
    assert rows[4][2:] == (40.75, -73.98, 40.76, -73.97)
    assert rows[5][2:4] == (40.75, -73.98) and np.isnan(rows[5][4]) and np.isnan(rows[5][5])  # empty -> NaN
    st = t.column("start_time").to_numpy()
    assert st[4] == np.datetime64("2016-11-02T10:00:00.123", "ns")  # fractional seconds kept


def test_span_filter_keeps_records_starting_or_ending_inside(tmp_path):
    z = _citibike_year(tmp_path)
    oct_ = _rows(read_trip_table([z], "trips-citibike", start="2016-10-01", end="2016-11-01"))
    assert [r[0] for r in oct_] == ["2016-10-01T00:00:07", "2016-10-31T23:55:00"]
    # the trip that starts on Oct 31 and ends in November comes from the October file (read thanks to the look-back)
    nov = _rows(read_trip_table([z], "trips-citibike", start="2016-11-01", end="2016-12-01"))
    assert [r[1] for r in nov] == ["2016-11-01T00:10:00", "2016-11-02T10:20:00", "2016-11-03T11:05:00"]
    # without look-back, the October file is skipped by its name: that trip is gone
    nov0 = read_trip_table([z], "trips-citibike", start="2016-11-01", end="2016-12-01", lookback=dt.timedelta(0))
    assert nov0.num_rows == 2
    hour = _rows(read_trip_table([z], "trips-citibike", start="2016-07-15T08:00", end="2016-07-15T09:00"))
    assert len(hour) == 1 and hour[0][0] == "2016-07-15T08:05:00"


def test_only_the_needed_months_are_read(tmp_path):
    broken_july = "tripduration,starttime,bikeid\n1,not a time,3\n"  # unreadable: would raise if it were opened
    z = _citibike_year(tmp_path, july=broken_july)
    t = read_trip_table([z], "trips-citibike", start="2016-10-01", end="2016-11-01")
    assert t.num_rows == 2
    with pytest.raises(DataError) as e:
        read_trip_table([z], "trips-citibike", start="2016-07-01", end="2016-08-01")
    msg = str(e.value)
    assert "7_July/201607-citibike-tripdata_1.csv" in msg and "2016-citibike-tripdata.zip" in msg
    assert "stoptime" in msg and "end_time" in msg  # says which column is missing and how it may be spelled
    # a whole yearly archive outside the span is not even opened
    (tmp_path / "2015-citibike-tripdata.zip").write_bytes(b"not a zip")
    assert (
        read_trip_table(
            [tmp_path / "2015-citibike-tripdata.zip", z], "trips-citibike", start="2016-10-01", end="2016-11-01"
        ).num_rows
        == 2
    )


def test_grid_trip_files_counts_the_records_of_the_span(tmp_path):
    """Records with neither time in the span are not records of the grid; the rest are counted or dropped per
    endpoint; a file whose records all miss the span, or that holds none, is refused with its name."""
    z = _citibike_year(tmp_path)
    spec = GridSpec.from_span((40.70, -74.00, 40.80, -73.90), (2, 2), "2016-10-01", "2016-11-01", 60)
    g = grid_trip_files([z], spec, kind="trips-citibike", dataset="cb")
    # the two October trips; the one ending on Nov 1 gives its outflow only
    assert g.records == 2 and g.counted == {"inflow": 1, "outflow": 2} and g.dropped == {"inflow": 1, "outflow": 0}
    assert g.counts.sum() == 3
    csv = tmp_path / "trips.csv"  # no month in the name: read, and every record lies outside the span
    csv.write_text(JULY)
    with pytest.raises(
        DataError,
        match=r"dataset 'cb', file .*trips\.csv.*all 2 trip records read fall outside the "
        r"span 2016-10-01T00:00:00\.\.2016-11-01T00:00:00",
    ):
        grid_trip_files([csv], spec, dataset="cb")
    empty = tmp_path / "none.csv"
    empty.write_text(OLD_HEADER + "\n")
    with pytest.raises(DataError, match=r"none\.csv.*no trip records in the input"):
        grid_trip_files([empty], spec, dataset="cb")


def test_name_period():
    assert name_period("2016-citibike-tripdata/8_August/201608-citibike-tripdata_1.csv") == (
        np.datetime64("2016-08-01", "ns"),
        np.datetime64("2016-09-01", "ns"),
    )
    assert name_period("yellow_tripdata_2015-12.parquet")[1] == np.datetime64("2016-01-01", "ns")
    assert name_period("2016-citibike-tripdata.zip") == (
        np.datetime64("2016-01-01", "ns"),
        np.datetime64("2017-01-01", "ns"),
    )
    assert name_period("JC-201608-citibike-tripdata.csv.zip")[0] == np.datetime64("2016-08-01", "ns")
    assert name_period("trips.parquet") is None and name_period("taxi_zones.zip") is None
    assert name_period("trips_20160801.csv") is None  # a day stamp is not a month file


def test_batches_are_bounded_and_grid_counts_match(tmp_path):
    z = _citibike_year(tmp_path)
    batches = list(iter_trip_batches([z], "trips-citibike", start="2016-01-01", end="2017-01-01", batch_rows=4))
    assert [b.num_rows for b in batches] == [4, 2]  # 2 + 2 + 2 records, never more than batch_rows per batch
    spec = GridSpec.from_span((40.70, -74.00, 40.80, -73.90), (2, 2), "2016-10-01", "2016-12-01", 60 * 24)
    g = grid_trips(iter_trip_batches([z], "trips-citibike", start="2016-10-01", end="2016-12-01"), spec)
    assert g.records == 4
    assert g.counted == {"outflow": 4, "inflow": 3}  # the NaN end coordinates are dropped by gridding
    assert g.counts[31, :, :, 0].sum() == 1 and g.counts[31, :, :, 1].sum() == 0  # Nov 1: inflow of the Oct 31 trip
    assert g.counts[0, 1, 0, 1] == 1 and g.counts[31, 1, 0, 0] == 1  # Williamsburg: the south-west cell


# ----------------------------------------------------------------------------------------------- TLC taxi files
def _project(lat: float, lon: float) -> tuple[float, float]:
    import pyproj

    return pyproj.Transformer.from_crs("EPSG:4326", "EPSG:2263", always_xy=True).transform(lon, lat)


def _unproject(x: float, y: float) -> tuple[float, float]:
    import pyproj

    lon, lat = pyproj.Transformer.from_crs("EPSG:2263", "EPSG:4326", always_xy=True).transform(x, y)
    return lat, lon


def _square(cx: float, cy: float, half: float, clockwise: bool = True) -> list[list[float]]:
    ring = [[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy + half], [cx + half, cy - half]]
    ring = ring if clockwise else ring[::-1]
    return [*ring, ring[0]]


# zone 1: a square around Times Square; zone 2: a square with a square hole in its NE quadrant; zone 3: two records
# (like the TLC's multi-record zones 56 and 103) of two equal squares
Z1 = (40.758, -73.9855)
Z2 = (40.70, -73.95)
Z3 = (40.80, -73.94)


def _taxi_zones(tmp: Path, *, id_field: str = "LocationID", prj: bool = True) -> tuple[Path, dict[int, tuple]]:
    import pyproj
    import shapefile

    x1, y1 = _project(*Z1)
    x2, y2 = _project(*Z2)
    x3, y3 = _project(*Z3)
    base = tmp / "shp" / "taxi_zones"
    base.parent.mkdir()
    with shapefile.Writer(str(base), shapeType=shapefile.POLYGON) as w:
        w.field("OBJECTID", "N")
        w.field(id_field, "N")
        w.field("zone", "C")
        w.poly([_square(x1, y1, 1000)])
        w.record(1, 1, "Times Sq")
        w.poly([_square(x2, y2, 2000), _square(x2 + 1000, y2 + 1000, 1000, clockwise=False)])
        w.record(2, 2, "with hole")
        w.poly([_square(x3 - 3000, y3, 500)])
        w.record(3, 3, "part a")
        w.poly([_square(x3 + 3000, y3, 500)])
        w.record(4, 3, "part b")
    members = {
        f"taxi_zones/taxi_zones{ext}": (base.parent / f"taxi_zones{ext}").read_bytes()
        for ext in (".shp", ".shx", ".dbf")
    }
    if prj:
        members["taxi_zones/taxi_zones.prj"] = pyproj.CRS.from_epsg(2263).to_wkt(pyproj.enums.WktVersion.WKT1_ESRI)
    p = tmp / "taxi_zones.zip"
    p.write_bytes(_zip_bytes(members))
    hole = (x2 - 4e6 * 1000 / 12e6, y2 - 4e6 * 1000 / 12e6)  # (16e6 * c - 4e6 * (c + 1000)) / 12e6
    return p, {1: Z1, 2: _unproject(*hole), 3: Z3}


def _tlc_ids(tmp: Path, name: str = "yellow_tripdata_2016-01.parquet") -> Path:
    def ts(*v):
        return pa.array(np.array(v, dtype="datetime64[us]"), pa.timestamp("us"))

    t = pa.table(
        {
            "VendorID": pa.array([1, 2, 1, 2, 1, 2], pa.int32()),
            "tpep_pickup_datetime": ts(
                "2016-01-01T00:10",
                "2016-01-01T01:00",
                "2015-12-31T23:50",
                "2016-01-20T12:00",
                "2016-02-01T00:00",
                "2088-01-01T00:00",
            ),
            "tpep_dropoff_datetime": ts(
                "2016-01-01T00:30",
                "2016-01-01T01:15",
                "2016-01-01T00:05",
                "2016-01-20T12:30",
                "2016-02-01T00:20",
                "2088-01-01T00:10",
            ),
            "passenger_count": pa.array([1, 1, 2, 1, 1, 1], pa.int64()),
            "PULocationID": pa.array([1, 2, 3, None, 1, 1], pa.int32()),
            "DOLocationID": pa.array([2, 3, 264, 1, 2, 2], pa.int32()),
            "fare_amount": pa.array([5.0] * 6),
        }
    )
    p = tmp / name
    pq.write_table(t, p, row_group_size=2)
    return p


def test_zone_centroids_from_shapefile(tmp_path):
    zones, expect = _taxi_zones(tmp_path)
    got = zone_centroids(zones).as_dict()
    assert sorted(got) == [1, 2, 3]
    for zid, (lat, lon) in expect.items():
        assert got[zid] == pytest.approx((lat, lon), abs=1e-7), zid  # ~1 cm
    assert got[2][0] < Z2[0] and got[2][1] < Z2[1]  # the hole pulls the centroid south-west
    # without a .prj the TLC's EPSG:2263 is assumed
    (tmp_path / "noprj").mkdir()
    zones2, _ = _taxi_zones(tmp_path / "noprj", prj=False)
    assert zone_centroids(zones2).as_dict()[1] == pytest.approx(Z1, abs=1e-7)


def test_tlc_zone_ids_become_centroids(tmp_path):
    zones, expect = _taxi_zones(tmp_path)
    f = _tlc_ids(tmp_path)
    # the zone file listed among the files (as in the download manifest) is found and not read as trips
    t = read_trip_table([f, zones], "trips-tlc", start="2016-01-01", end="2016-02-01")
    rows = _rows(t)
    assert [r[0] for r in rows] == [
        "2016-01-01T00:10:00",
        "2016-01-01T01:00:00",
        "2015-12-31T23:50:00",
        "2016-01-20T12:00:00",
    ]
    assert rows[0][2:] == pytest.approx((*expect[1], *expect[2]), abs=1e-7)
    assert rows[1][2:] == pytest.approx((*expect[2], *expect[3]), abs=1e-7)
    assert rows[2][2:4] == pytest.approx(expect[3], abs=1e-7) and np.isnan(rows[2][4])  # 264 = unknown zone
    assert np.isnan(rows[3][2]) and rows[3][4:] == pytest.approx(expect[1], abs=1e-7)  # null PULocationID
    same = read_trip_table([f], "trips-tlc", start="2016-01-01", end="2016-02-01", zones_zip=zones)
    assert same.to_pandas().equals(t.to_pandas())  # NaN-aware
    # an unbounded span keeps the 2088 outlier too
    assert read_trip_table([f], "trips-tlc", start=None, end=None, zones_zip=zones).num_rows == 6


def test_tlc_old_style_coordinates_need_no_zone_file(tmp_path):
    t = pa.table(
        {
            # a zone-aware timestamp is read as New York local time (13:00 UTC = 08:00 EST)
            "tpep_pickup_datetime": pa.array(np.array(["2015-01-05T13:00:00"], "datetime64[us]")).cast(
                pa.timestamp("us", "UTC")
            ),
            "tpep_dropoff_datetime": pa.array(np.array(["2015-01-05T08:20:00"], "datetime64[ns]")),
            "pickup_longitude": [-73.99],
            "pickup_latitude": [40.75],
            "dropoff_longitude": [-73.95],
            "dropoff_latitude": [40.78],
            "PULocationID": [1],
            "DOLocationID": [2],
        }
    )
    pq.write_table(t, tmp_path / "yellow_tripdata_2015-01.parquet")
    out = _rows(
        read_trip_table(
            [tmp_path / "yellow_tripdata_2015-01.parquet"], "trips-tlc", start="2015-01-01", end="2015-04-01"
        )
    )
    assert out == [("2015-01-05T08:00:00", "2015-01-05T08:20:00", 40.75, -73.99, 40.78, -73.95)]


# -------------------------------------------------------------------------------------------------------- errors
def test_id_only_tlc_file_without_zone_file(tmp_path):
    f = _tlc_ids(tmp_path)
    with pytest.raises(DataError) as e:
        read_trip_table([f], "trips-tlc", start="2016-01-01", end="2016-02-01", dataset="taxinyc1-trips")
    msg = str(e.value)
    assert "taxinyc1-trips" in msg and "yellow_tripdata_2016-01.parquet" in msg
    assert "PULocationID" in msg and "taxi_zones.zip" in msg


def test_unreadable_and_malformed_inputs(tmp_path):
    bad = tmp_path / "2016-citibike-tripdata.zip"
    bad.write_bytes(b"PK\x03\x04 cut off in transfer")
    with pytest.raises(DataError, match=r"2016-citibike-tripdata.zip.*not a readable zip"):
        read_trip_table([bad], "trips-citibike", start="2016-07-01", end="2016-08-01")
    empty = tmp_path / "201607-citibike-tripdata.zip"
    empty.write_bytes(_zip_bytes({"readme.txt": "nothing here"}))
    with pytest.raises(DataError, match=re.escape("holds no .csv")):
        read_trip_table([empty], "trips-citibike", start="2016-07-01", end="2016-08-01")
    no_lon = tmp_path / "trips.csv"
    no_lon.write_text(OLD_HEADER.replace(',"end station longitude"', "") + "\n")
    with pytest.raises(DataError) as e:
        read_trip_table([no_lon], "trips", start="2016-07-01", end="2016-08-01")
    assert "trips.csv" in str(e.value) and "end_lon" in str(e.value) and "end_lng" in str(e.value)
    garbage = tmp_path / "times.csv"
    garbage.write_text(
        "started_at,ended_at,start_lat,start_lng,end_lat,end_lng\nyesterday,today,40.7,-73.9,40.7,-73.9\n"
    )
    with pytest.raises(DataError, match=r"times.csv.*started_at.*'yesterday'"):
        read_trip_table([garbage], "trips", start="2016-07-01", end="2016-08-01")
    flipped = bytearray(_zip_bytes({"201610-citibike-tripdata.csv": OCTOBER + ("\n" + OCTOBER.split("\n")[1]) * 2000}))
    flipped[len(flipped) // 2 : len(flipped) // 2 + 64] = bytes(64)  # damaged compressed data
    (tmp_path / "201610-citibike-tripdata.zip").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match=r"201610-citibike-tripdata.zip!201610-citibike-tripdata.csv.*corrupt"):
        read_trip_table(
            [tmp_path / "201610-citibike-tripdata.zip"], "trips-citibike", start="2016-10-01", end="2016-11-01"
        )
    cut = _tlc_ids(tmp_path)
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(DataError, match=r"yellow_tripdata_2016-01.parquet.*not a readable Parquet"):
        read_trip_table([cut], "trips-tlc", start="2016-01-01", end="2016-02-01")
    with pytest.raises(DataError, match="unknown trip reader kind 'bike'"):
        read_trip_table([garbage], "bike", start="2016-07-01", end="2016-08-01")
    with pytest.raises(DataError, match="file not found"):
        read_trip_table([tmp_path / "nope.parquet"], "trips-tlc", start="2016-07-01", end="2016-08-01")
    with pytest.raises(DataError, match="empty span"):
        read_trip_table([garbage], "trips", start="2016-08-01", end="2016-07-01")


def test_zone_file_errors(tmp_path):
    zones, _ = _taxi_zones(tmp_path, id_field="ZONEID")
    with pytest.raises(DataError, match=r"taxi_zones.zip.*no field 'LocationID'.*ZONEID"):
        zone_centroids(zones)
    f = _tlc_ids(tmp_path)
    not_shp = tmp_path / "zones.zip"
    not_shp.write_bytes(_zip_bytes({"taxi_zone_lookup.csv": "LocationID,Borough\n1,EWR\n"}))
    with pytest.raises(DataError, match=r"zones.zip.*no .shp"):
        read_trip_table([f], "trips-tlc", start="2016-01-01", end="2016-02-01", zones_zip=not_shp)
