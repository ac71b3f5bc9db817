"""Readers into the canonical form: npz, zarr, STDN, ST-SSL windows (with the overlap check), real files. UniST JSON:
tests/data/test_unist.py."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from stvfm.data.readers import canonical, guess_kind, read_raw, rebuild_windows
from stvfm.errors import DataError

from data_helpers import make_params, series, write_raw


def test_npz_round_trip(tmp_path):
    flow = series(T=20, H=4, W=3)
    p = tmp_path / "a.npz"
    np.savez(p, flow=flow, freq_minutes=np.int64(30), start=np.str_("2016-08-10T00:00:00"))
    ds = read_raw([p], "npz", dataset="a").ds
    assert ds["flow"].dims == ("time", "y", "x", "channel") and ds["flow"].dtype == np.float32
    np.testing.assert_array_equal(ds["flow"].values, flow)
    assert ds.attrs["interval_minutes"] == 30
    assert ds["time"].values[0] == np.datetime64("2016-08-10T00:00")
    assert ds["time"].values[-1] == np.datetime64("2016-08-10T09:30")
    assert list(ds["channel"].values) == ["inflow", "outflow"]
    assert guess_kind(p) == "npz"


def test_npz_missing_freq_and_wrong_rank(tmp_path):
    p = tmp_path / "b.npz"
    np.savez(p, flow=series(T=5))
    with pytest.raises(DataError, match=r"dataset 'b', file .*b\.npz.*freq_minutes"):
        read_raw([p], "npz", dataset="b")
    np.savez(p, flow=np.zeros((5, 4, 3)), freq_minutes=np.int64(60))
    with pytest.raises(DataError, match=r"rank 3 .*expected rank 4"):
        read_raw([p], "npz", dataset="b")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_npz(tmp_path, damage):
    p = tmp_path / "c.npz"
    np.savez(p, flow=series(T=50), freq_minutes=np.int64(60))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a zip file at all")
    with pytest.raises(DataError, match=r"dataset 'c', file .*c\.npz.*(truncated or corrupt)"):
        read_raw([p], "npz", dataset="c")


def test_zarr_round_trip(tmp_path):
    flow = series(T=12, H=2, W=5, C=1)
    ds0 = canonical(flow, "2022-03-05T00:00", 5, ["speed"], bbox=[1.0, 2.0, 3.0, 4.0])
    ds0.to_zarr(tmp_path / "s.zarr", zarr_format=3, consolidated=False)
    ds = read_raw([tmp_path / "s.zarr"], "zarr", dataset="s").ds
    np.testing.assert_array_equal(ds["flow"].values, flow)
    assert ds.attrs["interval_minutes"] == 5 and ds.attrs["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert list(ds["channel"].values) == ["speed"]
    assert ds["time"].values[1] == np.datetime64("2022-03-05T00:05")


def test_stdn_swaps_channels(tmp_path):
    v = series(T=10, H=10, W=20)
    p = tmp_path / "volume_test.npz"
    np.savez(p, volume=v.astype(np.float64))
    assert guess_kind(p) == "stdn"
    ds = read_raw([p], "stdn", dataset="bikenyc2", interval_minutes=30, start="2016-08-10").ds
    np.testing.assert_array_equal(ds["flow"].values[..., 0], v[..., 1])  # inflow = STDN channel 1
    np.testing.assert_array_equal(ds["flow"].values[..., 1], v[..., 0])


# ---------------------------------------------------------------- ST-SSL
XOFF = np.array([-9, -8, -5, -4, -1, 0])
YOFF = np.array([1])


def stssl_windows(full: np.ndarray, first_anchor: int, n: int):
    """ST-SSL style windows: x[i, k] = full[anchor_i + XOFF[k]], y[i, 0] = full[anchor_i + 1] (nodes flattened)."""
    T, H, W, C = full.shape
    flat = full.reshape(T, H * W, C)
    anchors = first_anchor + np.arange(n)
    x = np.stack([flat[anchors + o] for o in XOFF], axis=1)
    y = np.stack([flat[anchors + o] for o in YOFF], axis=1)
    return {
        "x": x.astype(np.float64),
        "y": y.astype(np.float64),
        "x_offsets": XOFF.reshape(-1, 1),
        "y_offsets": YOFF.reshape(-1, 1),
    }


def test_stssl_rebuild_over_two_files(tmp_path):
    full = series(T=60, H=4, W=2)
    # val anchors 9..28, test anchors 29..58 -> steps 0..59
    np.savez(tmp_path / "val.npz", **stssl_windows(full, 9, 20))
    np.savez(tmp_path / "test.npz", **stssl_windows(full, 29, 30))
    assert guess_kind(tmp_path / "val.npz") == "stssl"
    ds = read_raw(
        [tmp_path / "test.npz", tmp_path / "val.npz"],
        "stssl",
        dataset="nycbike1",
        grid=(4, 2),
        interval_minutes=60,
        start="2014-08-04T23:00",
    ).ds
    np.testing.assert_array_equal(ds["flow"].values, full)
    assert ds["time"].values[0] == np.datetime64("2014-08-04T23:00")


def test_stssl_refuses_inconsistent_windows(tmp_path):
    full = series(T=40, H=2, W=2)
    w = stssl_windows(full, 9, 30)
    w["x"][7, 2] += 1.0  # one frame disagrees with the other windows that cover the same step
    np.savez(tmp_path / "val.npz", **w)
    with pytest.raises(DataError, match=r"file 'val\.npz'.*do not overlap exactly: window 7.*refusing"):
        read_raw([tmp_path / "val.npz"], "stssl", dataset="d", grid=(2, 2), interval_minutes=60)


def test_stssl_refuses_non_adjacent_files(tmp_path):
    full = series(T=80, H=2, W=2)
    np.savez(tmp_path / "val.npz", **stssl_windows(full, 9, 20))
    np.savez(tmp_path / "test.npz", **stssl_windows(full, 40, 20))  # 11-step gap between the files
    with pytest.raises(DataError, match=r"do not overlap exactly|uncovered"):
        read_raw([tmp_path / "val.npz", tmp_path / "test.npz"], "stssl", dataset="d", grid=(2, 2), interval_minutes=60)


def test_stssl_wrong_node_count(tmp_path):
    np.savez(tmp_path / "val.npz", **stssl_windows(series(T=40, H=2, W=2), 9, 5))
    with pytest.raises(DataError, match="4 nodes cannot be reshaped to the grid 16x8"):
        read_raw([tmp_path / "val.npz"], "stssl", dataset="d", grid=(16, 8), interval_minutes=60)


def test_rebuild_needs_adjacent_offsets():
    a = np.zeros((5, 3))
    with pytest.raises(DataError, match="cannot be verified to overlap"):
        rebuild_windows([(0, a), (5, a)], 5, dataset="d", path="f")


# ---------------------------------------------------------------- the real NYC samples, through the grid stage
@pytest.mark.real
@pytest.mark.parametrize(
    ("name", "shape", "freq", "start"),
    [
        ("bikenyc1_tail", (1369, 16, 8, 2), 60, "2014-08-04T23:00"),
        ("bikenyc2_test", (960, 10, 20, 2), 30, "2016-08-10T00:00"),
        ("taxinyc2_test", (960, 10, 20, 2), 30, "2015-02-10T00:00"),
    ],
)
def test_real_samples_via_local_sources(tmp_path, real_data_dir, name, shape, freq, start):
    from stvfm.data.stages import run_grid

    src = real_data_dir / f"{name}.npz"
    write_raw(tmp_path, name, {src.name: src.read_bytes()}, "npz")
    params = make_params({name: {"path": str(src), "like": name.split("_")[0]}})
    out = run_grid(name, params, tmp_path)
    assert out["shape"] == list(shape)
    ds = xr.open_zarr(tmp_path / "data" / "grid" / f"{name}.zarr", consolidated=False)
    with np.load(src) as z:
        np.testing.assert_array_equal(ds["flow"].values, z["flow"])
    assert ds.attrs["interval_minutes"] == freq and ds["time"].values[0] == np.datetime64(start)
    assert list(ds["channel"].values) == ["inflow", "outflow"] and ds.attrs["dataset"] == name


def test_zarr_with_missing_steps_refused(tmp_path):
    ds0 = canonical(series(T=10, H=2, W=2), "2024-01-01", 60)
    ds0 = ds0.isel(time=[0, 1, 2, 4, 5, 6, 7, 8, 9])  # step 3 missing
    ds0.to_zarr(tmp_path / "g.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(DataError, match=r"not regular at 60-minute steps: 1 gaps.*first after 2024-01-01T02:00"):
        read_raw([tmp_path / "g.zarr"], "zarr", dataset="g")
