"""`stvfm predict` with bad input files (issue 11, item 6): exit 2 and one stderr line that names the file and what is
wrong — never a traceback, never an output file, nothing else touched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving.version_fixtures import raw_window

from tiny_city import ROOT


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _predict(capsys, model: Path, inp: Path, *extra: str) -> tuple[int, str]:
    from stvfm.cli import main

    capsys.readouterr()
    rc = main(["predict", "--model", str(model), "--input", str(inp), "--out", str(inp.parent / "out.npz"), *extra])
    return rc, capsys.readouterr().err


def _refused(capsys, model, inp, match, *extra):
    before = _tree_hash(inp.parent)
    rc, err = _predict(capsys, model, inp, *extra)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(inp) in err and match in err, err
    assert not (inp.parent / "out.npz").exists()
    assert _tree_hash(inp.parent) == before
    return err


@pytest.fixture
def good(tiny_versions, tmp_path):
    x, last = raw_window(tiny_versions.root, steps=8)
    start = last - np.timedelta64(7 * 60, "m")
    return x, str(start), tmp_path


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.npz", b"", "cannot read .npz"),
        ("garbage.npz", b"\x00\x01not a zip at all" * 10, "cannot read .npz"),
        ("pickle.npz", b"\x80\x04\x95", "cannot read .npz"),
    ],
)
def test_unreadable_npz(capsys, tiny_versions, tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    _refused(capsys, tiny_versions.plain, tmp_path / name, match)


def test_truncated_npz(capsys, tiny_versions, good):
    x, start, d = good
    np.savez_compressed(d / "full.npz", flow=x, freq_minutes=60, start=start)
    data = (d / "full.npz").read_bytes()
    (d / "full.npz").unlink()
    (d / "cut.npz").write_bytes(data[: len(data) // 2])
    _refused(capsys, tiny_versions.plain, d / "cut.npz", "cannot read .npz")


def test_object_array_is_not_unpickled(capsys, tiny_versions, tmp_path):
    np.savez(tmp_path / "obj.npz", flow=np.array([{"a": 1}], dtype=object))
    _refused(capsys, tiny_versions.plain, tmp_path / "obj.npz", "cannot read .npz")


def test_non_numeric_flow(capsys, tiny_versions, tmp_path):
    np.savez(tmp_path / "str.npz", flow=np.full((8, 16, 8, 2), "x"))
    _refused(capsys, tiny_versions.plain, tmp_path / "str.npz", "must hold numbers")


def test_negative_values(capsys, tiny_versions, good):
    x, _, d = good
    x = x.copy()
    x[-1, 3, 3, 0] = -5
    np.savez(d / "neg.npz", flow=x)
    _refused(capsys, tiny_versions.plain, d / "neg.npz", "1 negative value(s)")


@pytest.mark.parametrize("start", ["yesterday", "2024-13-45", "", "12:00 next monday"])
def test_start_that_is_not_a_date(capsys, tiny_versions, good, start):
    x, _, d = good
    np.savez(d / "start.npz", flow=x, freq_minutes=60, start=start)
    _refused(capsys, tiny_versions.plain, d / "start.npz", "'start' is not a date/time")


def test_start_without_freq_and_bad_freq(capsys, tiny_versions, good):
    x, start, d = good
    np.savez(d / "nofreq.npz", flow=x, start=start)
    _refused(capsys, tiny_versions.plain, d / "nofreq.npz", "without 'freq_minutes'")
    np.savez(d / "badfreq.npz", flow=x, start=start, freq_minutes=-60)
    _refused(capsys, tiny_versions.plain, d / "badfreq.npz", "'freq_minutes' must be a positive integer")
    np.savez(d / "other.npz", flow=x, start=start, freq_minutes=30)
    _refused(capsys, tiny_versions.plain, d / "other.npz", "30-minute steps")


def test_time_identity_model_needs_timestamps(capsys, tiny_versions, good):
    x, start, d = good
    np.savez(d / "bare.npz", flow=x)
    _refused(capsys, tiny_versions.tid, d / "bare.npz", "uses time identities")
    _refused(capsys, tiny_versions.tid, d / "bare.npz", "--last-time is not a date/time", "--last-time", "soon")
    # with timestamps: from the file, or given explicitly — the same forecast
    np.savez(d / "timed.npz", flow=x, freq_minutes=60, start=start)
    assert _predict(capsys, tiny_versions.tid, d / "timed.npz")[0] == 0
    a = np.load(d / "out.npz")["forecast"]
    last = str(np.datetime64(start) + np.timedelta64(7 * 60, "m"))
    assert _predict(capsys, tiny_versions.tid, d / "bare.npz", "--last-time", last)[0] == 0
    np.testing.assert_array_equal(a, np.load(d / "out.npz")["forecast"])
    unix = str(int(np.datetime64(last, "s").astype(np.int64)))
    assert _predict(capsys, tiny_versions.tid, d / "bare.npz", "--last-time", unix)[0] == 0
    np.testing.assert_array_equal(a, np.load(d / "out.npz")["forecast"])


def test_zarr_inputs_corrupt_chunk_and_not_a_store(capsys, tiny_versions, good):
    import xarray as xr

    x, start, d = good
    times = np.datetime64(start, "ns") + np.arange(len(x)) * np.timedelta64(60, "m")
    ds = xr.Dataset({"flow": (("time", "y", "x", "channel"), x)}, coords={"time": times})
    ds.to_zarr(d / "in.zarr", mode="w", zarr_format=3, consolidated=False)
    assert _predict(capsys, tiny_versions.tid, d / "in.zarr")[0] == 0  # the time axis gives last_time
    (d / "out.npz").unlink()
    chunks = [p for p in (d / "in.zarr" / "flow").rglob("*") if p.is_file() and p.name != "zarr.json"]
    for p in chunks:
        p.write_bytes(b"\x13\x37 corrupt" * 3)
    _refused(capsys, tiny_versions.plain, d / "in.zarr", "cannot read 'flow' from the zarr store")
    (d / "empty.zarr").mkdir()
    _refused(capsys, tiny_versions.plain, d / "empty.zarr", "cannot open as a zarr store")


def test_cli_process_exit_code_and_one_line(tiny_versions, tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stvfm.cli",
            "predict",
            "--model",
            str(tiny_versions.plain),
            "--input",
            "bad.npz",
            "--out",
            "o.npz",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert r.stderr.startswith("stvfm predict: error: file 'bad.npz': cannot read .npz")
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize(
    ("last", "match"),
    [
        ("4611686018427387904", "--last-time 4611686018427387904 is outside 1900-01-01T00:00:00..2200-01-01T00:00:00"),
        ("-4611686018427387904", "is outside 1900-01-01"),  # issue 23: these were an IndexError traceback
        ("1e300", "is outside 1900-01-01"),
        ("1704495600.5", "--last-time must be whole unix seconds"),
        ("1800-01-01T00:00", "is outside 1900-01-01"),
        ("nan", "must be whole unix seconds"),
    ],
)
def test_last_time_out_of_range_or_fractional(capsys, tiny_versions, good, last, match):
    x, _, d = good
    np.savez(d / "bare.npz", flow=x)
    _refused(capsys, tiny_versions.tid, d / "bare.npz", match, "--last-time", last)


def test_last_time_off_the_model_grid_and_values_beyond_the_training_range(capsys, tiny_versions, good):
    x, start, d = good
    np.savez(d / "bare.npz", flow=x)
    last = int(np.datetime64(start, "s").astype(np.int64)) + 7 * 3600
    _refused(
        capsys, tiny_versions.tid, d / "bare.npz", "not on the model's 60-minute grid", "--last-time", str(last + 1800)
    )
    huge = x.copy()
    huge[-1] = 3e38
    np.savez(d / "huge.npz", flow=huge)
    _refused(capsys, tiny_versions.plain, d / "huge.npz", "lie beyond 10000 training standard deviations")
    np.savez(d / "late.npz", flow=x, freq_minutes=60, start="2199-12-31T23:00")  # its last step: after 2200
    _refused(capsys, tiny_versions.tid, d / "late.npz", "outside 1900-01-01")


@pytest.mark.slow
def test_huge_last_time_exits_2_with_one_line(tiny_versions, tmp_path):
    """The issue's exact command: a process, exit code 2, one stderr line, no traceback."""
    x, _ = raw_window(tiny_versions.root, steps=8)
    np.savez(tmp_path / "in.npz", flow=x)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stvfm.cli",
            "predict",
            "--model",
            str(tiny_versions.tid),
            "--input",
            "in.npz",
            "--out",
            "o.npz",
            "--last-time",
            "4611686018427387904",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "--last-time 4611686018427387904 is outside" in r.stderr and not (tmp_path / "o.npz").exists()
