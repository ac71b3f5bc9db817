"""The UniST reader (stvfm.data.unist) against files this test writes itself from arrays, the way UniST's own loader
reads them (src/DataLoader.py: X_<split>[0] (N, T, H, W) + unsqueeze(1), X_<split>[1] (N, T, P, H, W), timestamps as
step indices -> ((i % 336) // 48 + 2) % 7, i % 48 for Crowd/Cellular, else (weekday, slot) pairs) -- not by the
reader's code, and not by the fixture generator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stvfm.data.readers import read_raw
from stvfm.data.timefeatures import series_time_ids
from stvfm.data.unist import read_unist
from stvfm.errors import DataError

T_SEQ = 12


def unist_file(
    path, full, starts, *, stamps="pairs", first="2016-08-01T00:00", minutes=30, slots=48, periods=2, index0=0
):
    """Write ``full`` (L, H, W) as UniST does: per split the windows starting at ``starts[split]`` (series steps).
    ``stamps``: "index" (step index ``index0 + k``) or "pairs" ((weekday Mon=0, slot) of a ``slots``-a-day clock)."""
    out, ts = {}, {}
    t0 = np.datetime64(first, "m")
    for split, a in zip(("train", "val", "test"), starts, strict=True):
        a = np.asarray(a)
        idx = a[:, None] + np.arange(T_SEQ)[None, :]
        X = full[idx]  # (N, T, H, W)
        P = np.stack([full[np.clip(idx - (periods - p), 0, None)] for p in range(periods)], axis=2)  # (N, T, P, H, W)
        out[f"X_{split}"] = [X.tolist(), P.tolist()]
        if stamps == "index":
            ts[split] = (idx + index0).tolist()
        else:
            t = t0 + idx * np.timedelta64(minutes, "m")
            day = t.astype("datetime64[D]")
            ts[split] = np.stack(
                [(day.astype(np.int64) + 3) % 7, (t - day).astype(np.int64) // (1440 // slots)], axis=-1
            ).tolist()
    out["timestamps"] = ts
    path.write_text(json.dumps(out))
    return out


def counts(L, H=3, W=2, seed=0):
    # JSON floats as the published files have them: counts with float round-off
    v = np.random.default_rng(seed).poisson(4.0, size=(L, H, W)).astype(np.float64)
    return np.where(v == 4, np.nextafter(4.0, 5.0), v)


def win(a, n):
    return list(range(a, a + n))


OVERLAP = (win(0, 40), win(40, 10), win(50, 10))  # a window list cut by ratio: consecutive splits overlap 11 steps
ADJACENT = (win(0, 30), win(41, 8), win(60, 9))  # the series cut first: adjacent splits


@pytest.mark.parametrize("starts", [OVERLAP, ADJACENT], ids=["overlapping-splits", "adjacent-splits"])
@pytest.mark.parametrize(
    ("form", "minutes", "slots", "first"),
    [
        ("index", 30, 48, None),  # Crowd / Cellular
        ("pairs", 30, 48, "2016-08-01T05:30"),  # 30-minute file, slots 0..47 (Traffic*, BikeNYC-1, TaxiNYC)
        ("pairs", 60, 24, "2016-07-03T22:00"),  # hourly, slots 0..23 (TDrive, BikeNYC-2)
        ("pairs", 60, 48, "2016-08-02T01:00"),  # hourly on a 48-slot clock (every other slot, UniST issue #23)
    ],
)
def test_reads_as_unists_loader_does(tmp_path, starts, form, minutes, slots, first):
    L = max(max(s) for s in starts) + T_SEQ
    full = counts(L)
    p = tmp_path / "Some_short.json"
    written = unist_file(
        p, full, starts, stamps=form, first=first or "2020-11-11T00:00", minutes=minutes, slots=slots, index0=150
    )
    ds = read_unist(p, dataset="x", start="2016-07-30" if form == "pairs" else "2020-11-11")
    assert ds.attrs["interval_minutes"] == minutes and ds.attrs["stamps"] == (
        "index" if form == "index" else "weekday-slot"
    )
    assert ds["flow"].shape == (L, 3, 2, 1) and list(ds["channel"].values) == ["flow"]
    # float32, as UniST's loader holds them (torch.tensor of the JSON floats)
    np.testing.assert_array_equal(ds["flow"].values[..., 0], full.astype(np.float32))
    tid = series_time_ids(ds.attrs["start"], minutes, L)  # (slot of day, weekday) of every step
    minute_of_day = tid[:, 0] * minutes
    pub = ds.attrs["published_windows"]
    assert pub["window"] == T_SEQ
    for split, a in zip(("train", "val", "test"), starts, strict=True):
        X = np.asarray(written[f"X_{split}"][0])
        t0 = np.asarray(pub["t0"][split])
        np.testing.assert_array_equal(t0, a)  # each window where the file put it ...
        got = ds["flow"].values[t0[:, None] + np.arange(T_SEQ)][..., 0]
        np.testing.assert_array_equal(got, X.astype(np.float32))  # ... holding exactly the file's values
        st = np.asarray(written["timestamps"][split])
        if form == "index":  # UniST's own conversion of the indices
            wd, slot = ((st % 336) // 48 + 2) % 7, st % 48
            mod = slot * 30
        else:
            wd, mod = st[..., 0], st[..., 1] * (1440 // slots)
        steps = t0[:, None] + np.arange(T_SEQ)
        np.testing.assert_array_equal(tid[steps, 1], wd)
        np.testing.assert_array_equal(minute_of_day[steps], mod)
    if form == "index":  # index 0 = the span start 2020-11-11 (a Wednesday), first step = index 150
        assert ds["time"].values[0] == np.datetime64("2020-11-11T00:00") + np.timedelta64(150 * 30, "m")


def test_index_origin_moves_to_a_wednesday(tmp_path):
    p = tmp_path / "Crowd_short.json"
    unist_file(p, counts(40), (win(0, 10), win(10, 8), win(18, 10)), stamps="index")
    ds = read_unist(p, dataset="crowd", start="2020-11-09")  # a Monday: index 0 is the Wednesday after
    assert ds["time"].values[0] == np.datetime64("2020-11-11T00:00")
    assert "not a Wednesday" in ds.attrs["note"]


def test_read_raw_dispatches_and_ignores_the_tables_interval(tmp_path):
    p = tmp_path / "BikeNYC_short.json"
    unist_file(p, counts(60), (*OVERLAP[:1], win(40, 5), win(45, 3)), minutes=30, slots=48)
    ds = read_raw([p], "unist", dataset="bikenyc1", interval_minutes=60, start="2016-08-01").ds
    assert ds.attrs["interval_minutes"] == 30 and ds.attrs["source"] == "unist:BikeNYC_short.json"


# ------------------------------------------------------------------ files that break one convention: one line each
def _broken(tmp_path, edit, **kw):
    p = tmp_path / "TaxiNYC_short.json"
    d = unist_file(p, counts(70), (win(0, 40), win(40, 10), win(50, 8)), **kw)
    edit(d)
    p.write_text(json.dumps(d))
    with pytest.raises(DataError) as e:
        read_unist(p, dataset="taxinyc1", start="2016-01-01")
    msg = str(e.value)
    assert "\n" not in msg and "TaxiNYC_short.json" in msg and "dataset 'taxinyc1'" in msg
    return msg


def test_slot_past_the_day(tmp_path):
    def edit(d):
        d["timestamps"]["val"][3][5][1] = 48

    assert "timestamps.val: slot 48 at window 3, step 5 is past the day: the file's days have 48 slots" in _broken(
        tmp_path, edit
    )


def test_weekday_out_of_range(tmp_path):
    def edit(d):
        d["timestamps"]["test"][0][0][0] = 7

    assert "weekday 7 at window 0, step 0 is not 0..6" in _broken(tmp_path, edit)


def test_stamps_that_do_not_advance_one_step(tmp_path):
    def edit(d):
        d["timestamps"]["train"][2][4][1] += 1

    assert "timestamps.train: window 2, step 4" in _broken(tmp_path, edit)


@pytest.mark.parametrize("form", ["pairs", "index"])
def test_gap_between_splits(tmp_path, form):
    p = tmp_path / "TaxiNYC_short.json"
    unist_file(p, counts(80), (win(0, 30), win(44, 10), win(54, 10)), stamps=form)  # steps 41..43 in no window
    with pytest.raises(
        DataError,
        match=r"TaxiNYC_short\.json.*a gap of 3 step\(s\) between train and val: train ends "
        r"at step 40, val starts at step 44",
    ):
        read_unist(p, dataset="taxinyc1", start="2016-01-01")


def test_a_second_channel(tmp_path):
    def edit(d):
        X = np.asarray(d["X_train"][0])
        d["X_train"][0] = np.stack([X, X], axis=-1).tolist()

    assert (
        "'X_train[0]' has shape (40, 12, 3, 2, 2): a channel axis (2 channel(s)) where the format has one"
        in _broken(tmp_path, edit)
    )


def test_windows_that_disagree(tmp_path):
    def edit(d):
        d["X_train"][0][5][3][0][0] += 1

    msg = _broken(tmp_path, edit)
    assert "X_train: window 5, step 3 (series step 8) differs from the value an earlier window placed" in msg
    assert "do not overlap exactly" in msg


def test_period_arrays_of_the_wrong_shape(tmp_path):
    def edit(d):
        d["X_val"][1] = np.asarray(d["X_val"][1])[:, :, :, :2].tolist()  # (N, T, P, 2, W): not the grid

    assert "'X_val[1]' (X_period) has shape (10, 12, 2, 2, 2); expected (N, T, P, H, W) = (10, 12, P, 3, 2)" in _broken(
        tmp_path, edit
    )


def test_missing_layout_keys(tmp_path):
    def edit(d):
        del d["timestamps"]

    assert "missing key(s) timestamps" in _broken(tmp_path, edit)

    def edit2(d):
        d["X_test"] = d["X_test"][0]  # the windows without the [X, X_period] nesting

    assert "'X_test' must be [X, X_period]" in _broken(tmp_path, edit2)


def test_truncated_file(tmp_path):
    p = tmp_path / "Crowd_short.json"
    unist_file(p, counts(40), (win(0, 10), win(10, 8), win(18, 10)), stamps="index")
    p.write_text(p.read_text()[:500])
    with pytest.raises(DataError, match=r"Crowd_short\.json.*not valid UniST JSON"):
        read_unist(p, dataset="crowd")
