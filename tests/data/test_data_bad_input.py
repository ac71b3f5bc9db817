"""Each bad input -> a DataError naming dataset and file, and no output (nor temp files) left behind."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stvfm.data.stages import run_flow, run_grid, run_split
from stvfm.errors import DataError

from data_helpers import leftovers, make_params, npz_dataset, series, write_raw


def assert_no_grid_output(root, name):
    grid = root / "data" / "grid"
    assert not (grid / f"{name}.zarr").exists() and not (grid / f"{name}.stats.parquet").exists()
    assert leftovers(grid) == []


def _flow_with(kind):
    f = series(T=50, H=3, W=2)
    if kind == "nan":
        f[17, 1, 0, 1] = np.nan
    elif kind == "inf":
        f[3, 0, 1, 0] = np.inf
    elif kind == "negative":
        f[9, 2, 1, 0] = -4
    elif kind == "rank":
        f = f[..., 0]
    return f


@pytest.mark.parametrize(
    ("kind", "msg"),
    [
        ("nan", r"1 non-finite values \(NaN/inf\); first is NaN at time step 17, cell \(1, 0\), channel 1"),
        ("inf", r"first is inf at time step 3, cell \(0, 1\), channel 0"),
        ("negative", r"1 negative values \(min -4.0\); first at time step 9, cell \(2, 1\)"),
        ("rank", r"rank 3 .*expected rank 4"),
    ],
)
def test_bad_values_refused(tmp_path, kind, msg):
    params = npz_dataset(tmp_path, "bad", _flow_with(kind))
    with pytest.raises(DataError, match=rf"dataset 'bad', file '.*bad\.npz'.*{msg}"):
        run_grid("bad", params, tmp_path)
    assert_no_grid_output(tmp_path, "bad")


def test_bad_input_keeps_previous_output(tmp_path):
    """A failing rerun leaves the previous good output exactly as it was."""
    params = npz_dataset(tmp_path, "ds", series(T=50, H=3, W=2))
    run_grid("ds", params, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "data/grid").rglob("*"))
    npz_dataset(tmp_path, "ds", _flow_with("nan"))
    with pytest.raises(DataError):
        run_grid("ds", params, tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "data/grid").rglob("*")) == before


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_truncated_or_corrupt_file(tmp_path, damage):
    params = npz_dataset(tmp_path, "bad", series(T=200, H=8, W=8))
    f = tmp_path / "data/raw/bad/bad.npz"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 3] if damage == "truncated" else raw[:100] + b"\x00" * 64 + raw[164:])
    with pytest.raises(DataError, match=r"dataset 'bad', file '.*bad\.npz'.*(truncated or corrupt|not a readable)"):
        run_grid("bad", params, tmp_path)
    assert_no_grid_output(tmp_path, "bad")


def test_truncated_trip_parquet(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    st = np.datetime64("2024-01-01T00:00", "ns") + rng.integers(0, 3600 * 10**9, n).astype("timedelta64[ns]")
    t = pa.table(
        {
            "start_time": st,
            "end_time": st,
            "start_lat": rng.uniform(0, 1, n),
            "start_lon": rng.uniform(0, 1, n),
            "end_lat": rng.uniform(0, 1, n),
            "end_lon": rng.uniform(0, 1, n),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink)
    data = sink.getvalue().to_pybytes()
    write_raw(
        tmp_path,
        "trips",
        {"trips.parquet": data[: len(data) - 300]},
        "trips",
        bbox=[0, 0, 1, 1],
        start="2024-01-01T00:00:00",
        end="2024-01-01T02:00:00",
        interval_minutes=60,
        grid=[2, 2],
    )
    with pytest.raises(DataError, match=r"dataset 'trips', file '.*trips\.parquet'.*truncated or corrupt"):
        run_grid("trips", make_params({"trips": "trips.parquet"}), tmp_path)
    assert_no_grid_output(tmp_path, "trips")
    # the intact file grids fine: 2 steps, 2x2 cells, every record inside
    (tmp_path / "data/raw/trips/trips.parquet").write_bytes(data)
    out = run_grid("trips", make_params({"trips": "trips.parquet"}), tmp_path)
    assert out["shape"] == [2, 2, 2, 2] and out["records"] == {"inflow": n, "outflow": n}


def test_wrong_grid_for_a_known_dataset(tmp_path):
    # `synthetic` is in the table as 16x8 with 2 channels; a 10x20 file is the wrong file
    write_raw(tmp_path, "synthetic", {"x.npz": {"flow": series(T=30, H=10, W=20), "freq_minutes": np.int64(60)}}, "npz")
    with pytest.raises(DataError, match=r"dataset 'synthetic'.*grid is 10x20 but the dataset table says 16x8"):
        run_grid("synthetic", make_params(), tmp_path)
    assert_no_grid_output(tmp_path, "synthetic")


def test_missing_raw_and_upstream(tmp_path):
    params = make_params({"nothing": "x.npz"})
    with pytest.raises(DataError, match=r"dataset 'nothing'.*manifest.json.*dvc repro download@nothing"):
        run_grid("nothing", params, tmp_path)
    with pytest.raises(DataError, match=r"no grid: run `dvc repro grid@nothing`"):
        run_flow("nothing", params, tmp_path)
    with pytest.raises(DataError, match=r"no grid"):
        run_split("nothing", params, tmp_path)
