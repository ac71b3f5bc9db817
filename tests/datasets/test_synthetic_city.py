"""The embedded virtual city: deterministic trip records with the canonical schema and realistic structure."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from stvfm.config import SyntheticConfig, params_from_dict
from stvfm.datasets.download import run_download, sha256_file
from stvfm.datasets.registry import SYNTHETIC, get_spec
from stvfm.datasets.synthetic import TRIP_SCHEMA, generate_trips, synthetic_bbox
from stvfm.errors import ConfigError
from stvfm.io import read_json

SMALL = SyntheticConfig(seed=3, trips_per_step=300.0, span_days=14)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("city") / "trips.parquet"
    info = generate_trips(SYNTHETIC, SMALL, out)
    return out, info, pq.read_table(out).to_pandas()


def _grid_counts(df, info):
    """(T, H*W) outflow and inflow counts with a plain floor-binning of the bbox (row 0 = lat_min)."""
    H, W = info.grid
    lat0, lon0, lat1, lon1 = info.bbox
    t0 = np.datetime64(info.start, "ns")
    step = np.timedelta64(info.interval_minutes, "m")

    def cells(lat, lon):
        y = np.floor((lat - lat0) / (lat1 - lat0) * H).astype(int)
        x = np.floor((lon - lon0) / (lon1 - lon0) * W).astype(int)
        return y * W + x

    out = np.zeros((info.steps, H * W))
    inn = np.zeros((info.steps, H * W))
    so = ((df.start_time.values - t0) // step).astype(int)
    eo = ((df.end_time.values - t0) // step).astype(int)
    np.add.at(out, (so, cells(df.start_lat.values, df.start_lon.values)), 1)
    np.add.at(inn, (eo, cells(df.end_lat.values, df.end_lon.values)), 1)
    return out, inn


def test_same_seed_byte_identical(tmp_path, small):
    path, info, _ = small
    again = tmp_path / "again.parquet"
    info2 = generate_trips(SYNTHETIC, SMALL, again)
    assert again.read_bytes() == path.read_bytes()
    assert info2 == info
    other = tmp_path / "other.parquet"
    generate_trips(SYNTHETIC, SyntheticConfig(seed=4, trips_per_step=300.0, span_days=14), other)
    assert sha256_file(other) != sha256_file(path)


def test_schema_row_groups_and_span(small):
    path, info, df = small
    f = pq.ParquetFile(path)
    assert f.schema_arrow == TRIP_SCHEMA
    assert f.metadata.num_row_groups == 2  # one per simulated week
    assert info.records == len(df) == f.metadata.num_rows
    assert (info.start, info.end, info.steps) == ("2024-01-01T00:00:00", "2024-01-15T00:00:00", 14 * 24)
    assert info.grid == (16, 8) and info.interval_minutes == 60 and info.bbox == synthetic_bbox((16, 8))
    # ~ trips_per_step per step on average (weekly-normalised intensity, weather factor, bursts)
    assert 0.8 * 300 * info.steps < len(df) < 1.25 * 300 * info.steps
    assert df.start_time.is_monotonic_increasing
    assert df.start_time.min() >= np.datetime64("2024-01-01") and df.end_time.max() < np.datetime64("2024-01-15")
    assert (df.end_time > df.start_time).all()
    lat0, lon0, lat1, lon1 = info.bbox
    for c, lo, hi in (
        ("start_lat", lat0, lat1),
        ("end_lat", lat0, lat1),
        ("start_lon", lon0, lon1),
        ("end_lon", lon0, lon1),
    ):
        assert df[c].min() >= lo and df[c].max() < hi, c
    # durations follow distance: many trips end in a later hour than they started
    later = (df.end_time.dt.floor("h") > df.start_time.dt.floor("h")).mean()
    assert 0.15 < later < 0.6


def test_daily_and_weekly_cycles(small):
    _, info, df = small
    out, _ = _grid_counts(df, info)
    total = out.sum(1).reshape(14, 24)  # (day, hour); 2024-01-01 is a Monday
    weekday, weekend = total[[d for d in range(14) if d % 7 < 5]].mean(0), total[[5, 6, 12, 13]].mean(0)
    assert int(np.argmax(weekday)) in (7, 8, 9, 16, 17, 18)  # commute peaks
    assert weekday.max() > 5 * weekday.min()  # night trough
    assert weekday[8] > 2 * weekend[8]  # weekends have no morning rush
    assert 10 <= int(np.argmax(weekend)) <= 17  # one broad afternoon peak
    series = out.sum(1)
    assert np.corrcoef(series[:-24], series[24:])[0, 1] > 0.6  # daily periodicity


def test_commute_moves_between_hotspots(small):
    """Cells that gain trips in the morning lose them in the evening: inflow/outflow and their change carry signal."""
    _, info, df = small
    out, inn = _grid_counts(df, info)
    hour = np.arange(info.steps) % 24
    wd = (np.arange(info.steps) // 24) % 7 < 5
    morning, evening = wd & (hour >= 7) & (hour <= 9), wd & (hour >= 17) & (hour <= 19)
    net_m = (inn[morning] - out[morning]).mean(0)
    net_e = (inn[evening] - out[evening]).mean(0)
    assert np.corrcoef(net_m, net_e)[0, 1] < -0.5
    assert np.abs(net_m).max() > 3  # a clear net inflow somewhere
    dflow = np.diff(out, axis=0)
    assert np.abs(dflow).mean() > 0.5  # the ST flow is not flat


def test_bursts_add_spikes(tmp_path):
    cfg = dict(seed=1, trips_per_step=200.0, span_days=7)
    quiet, busy = tmp_path / "q.parquet", tmp_path / "b.parquet"
    iq = generate_trips(SYNTHETIC, SyntheticConfig(**cfg, burst_rate=0.0), quiet)
    ib = generate_trips(SYNTHETIC, SyntheticConfig(**cfg, burst_rate=0.2), busy)
    oq, _ = _grid_counts(pq.read_table(quiet).to_pandas(), iq)
    ob, _ = _grid_counts(pq.read_table(busy).to_pandas(), ib)
    assert ob.max() > 1.5 * oq.max()
    assert ib.records > iq.records


def test_stand_in_takes_the_table_shape(tmp_path):
    params = params_from_dict({"data": {"synthetic": {"span_days": 1, "trips_per_step": 50}}})
    raw = run_download("synthetic-trafficsh", params, tmp_path)
    m = read_json(raw / "manifest.json")
    # the published TrafficSH file's shape: 28x32, one channel, 30-minute steps (Table 1 prints 5 min)
    assert (m["grid"], m["interval_minutes"], m["channels"], m["steps"]) == ([28, 32], 30, 1, 48)
    assert m["channel_names"] == ["outflow"] and "start" in m["channel_def"]["outflow"]
    assert (m["start"], m["end"]) == ("2022-01-27T00:00:00", "2022-01-28T00:00:00")
    assert m["kind"] == "trips" and m["files"][0]["name"] == "trips.parquet"
    assert m["files"][0]["sha256"] == sha256_file(raw / "trips.parquet")
    assert m["records"] == pq.ParquetFile(raw / "trips.parquet").metadata.num_rows > 0
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "trips.parquet"]


def test_default_is_fast_and_bikenyc_shaped(tmp_path):
    spec = get_spec("synthetic")
    assert (spec.grid, spec.interval_minutes, spec.channels) == ((16, 8), 60, 2)
    t = time.perf_counter()
    info = generate_trips(spec, SyntheticConfig(), tmp_path / "t.parquet")
    assert time.perf_counter() - t < 20  # about 1 s on 2 cores
    assert info.steps == 60 * 24 and info.records > 400_000


@pytest.mark.parametrize(
    ("key", "value"), [("trips_per_step", 0), ("burst_rate", 1.5), ("span_days", 0), ("hotspots", -1)]
)
def test_bad_synthetic_params(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"data.synthetic.{key}"):
        generate_trips(SYNTHETIC, SyntheticConfig(**{key: value}), tmp_path / "x.parquet")
    params = params_from_dict({"data": {"synthetic": {key: value}}})
    with pytest.raises(ConfigError):
        run_download("synthetic", params, tmp_path)
    assert not (tmp_path / "data" / "raw" / "synthetic").exists()


def test_few_hotspots_still_work(tmp_path):
    info = generate_trips(
        SYNTHETIC, SyntheticConfig(hotspots=0, span_days=1, trips_per_step=20), tmp_path / "h.parquet"
    )
    assert info.records > 0
