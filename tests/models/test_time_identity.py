"""Time identity (model.time_identity) and output path (model.output): shapes, the clock changes the forecast,
missing ids are a DataError, needs_time_ids, anchored starts as the paper's decoder, the paper profile keeps both
off."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from stvfm.config import load_params
from stvfm.data.timefeatures import window_time_ids
from stvfm.errors import ConfigError, DataError
from stvfm.models.factory import build_model, needs_time_ids
from stvfm.models.time_embed import TimeIdentity

from .conftest import tiny_cfg

VARIANTS = ["simple", "token", "temporal", "adapter", "full"]


def ids(b: int, interval: int = 30, hour: int = 8) -> torch.Tensor:
    last = np.datetime64(f"2016-08-10T{hour:02d}:00") + np.arange(b) * np.timedelta64(interval, "m")
    return torch.from_numpy(window_time_ids(last, interval, 6, 6))


def test_table_size_follows_interval():
    assert TimeIdentity(30, 8).tod.num_embeddings == 48
    assert TimeIdentity(60, 8).tod.num_embeddings == 24
    e = TimeIdentity(30, 8)(ids(3))
    assert e.shape == (3, 12, 8)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("output", ["plain", "last", "anchored", "identity"])
def test_every_variant_with_clock_and_output(variant, output):
    torch.manual_seed(0)
    model, _ = build_model(
        tiny_cfg(variant=variant, time_identity=True, output=output), (10, 20), 2, interval_minutes=30
    )
    x = torch.randn(2, 6, 2, 10, 20)
    out = model(x, torch.randn_like(x), time_ids=ids(2))
    assert out.st.shape == (2, 6, 2, 10, 20) and torch.isfinite(out.st).all()
    out.st.sum().backward()
    if output == "anchored":  # starts at the anchor (ST head zero-initialised): the head and the table learn first
        head = model.st_dec.mlp[-1] if variant == "simple" else model.st_dec.head
        assert head.weight.grad.abs().sum() > 0 and model.output_path.table.grad.abs().sum() > 0
    elif output == "identity":  # STID's network learns from the start; the zero-initialised ST head gets a gradient
        head = model.st_dec.mlp[-1] if variant == "simple" else model.st_dec.head
        assert head.weight.grad.abs().sum() > 0
        assert model.output_path.identity.node_emb.grad.abs().sum() > 0
    else:
        assert model.time_in.tod.weight.grad is not None and model.time_in.tod.weight.grad.abs().sum() > 0


def test_anchor_is_the_train_time_of_day_mean():
    model, _ = build_model(tiny_cfg(output="anchored"), (4, 4), 1, interval_minutes=360)  # 4 slots per day
    series = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 4, 4)
    slots = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])  # slot 3 never seen -> overall mean
    model.output_path.fit_anchor(series, slots)
    t = model.output_path.table[:, 0, 0, 0]
    torch.testing.assert_close(t, torch.tensor([3.0, 4.0, 3.5, 3.5]))
    x = torch.randn(2, 6, 1, 4, 4)
    tid = ids(2, 360, 0)  # last input at 00:00 -> forecast slots 1, 2, 3, 0, 1, 2
    out = model(x, x, time_ids=tid).st  # zero head + zero last-step weight: exactly the anchor
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor([4.0, 3.5, 3.5, 3.0, 4.0, 3.5]))


def test_clock_changes_the_forecast_and_none_is_a_data_error():
    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(time_identity=True), (8, 8), 1, interval_minutes=60)
    x = torch.randn(1, 6, 1, 8, 8)
    a = model(x, x, time_ids=ids(1, 60, 8)).st
    b = model(x, x, time_ids=ids(1, 60, 20)).st
    assert not torch.allclose(a, b)
    with pytest.raises(DataError, match="time_ids"):
        model(x, x)
    with pytest.raises(DataError, match="shape"):
        model(x, x, time_ids=ids(1, 60)[:, :6])


def test_without_clock_ids_are_ignored():
    model, _ = build_model(tiny_cfg(), (8, 8), 1)
    x = torch.randn(1, 6, 1, 8, 8)
    torch.testing.assert_close(model(x, x).st, model(x, x, time_ids=ids(1, 60)).st)


def test_anchored_starts_as_plain_and_last_adds_last_step():
    torch.manual_seed(0)
    plain, _ = build_model(tiny_cfg(output="plain"), (8, 8), 1, interval_minutes=60)
    for kind in ("anchored", "last"):
        other, _ = build_model(tiny_cfg(output=kind), (8, 8), 1, interval_minutes=60)
        other.load_state_dict(plain.state_dict(), strict=False)
        x = torch.randn(2, 6, 1, 8, 8)
        p, o = plain(x, x).st, other(x, x, time_ids=ids(2, 60)).st
        torch.testing.assert_close(o, p + (x[:, -1:] if kind == "last" else 0))


def test_identity_starts_as_stid_and_then_adds_the_vfm_path():
    """output=identity: forecast = STID(x, clock) + decoder; the ST head starts at zero, so a fresh model is exactly its
    STID network (built from model.stid), and every VFM-path parameter then reaches the forecast."""
    from stvfm.models.stid import STID

    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(output="identity", time_identity=True), (8, 8), 2, interval_minutes=60)
    model.eval()  # STID's residual layers carry the reference's dropout (0.15), active in training only
    stid = model.output_path.identity
    assert isinstance(stid, STID) and stid.time_identity and stid.steps_per_day == 24
    x, tid = torch.randn(2, 6, 2, 8, 8), ids(2, 60)
    torch.testing.assert_close(model(x, x, time_ids=tid).st, stid(x, None, tid).st)
    torch.nn.init.normal_(model.st_dec.head.weight)
    assert not torch.allclose(model(x, x, time_ids=tid).st, stid(x, None, tid).st)
    with pytest.raises(DataError, match="time_ids"):
        model(x, x)
    assert needs_time_ids(tiny_cfg(output="identity"))
    assert "identity.node_emb" in "".join(model.state_dict())


def test_needs_time_ids_and_interval_required():
    assert needs_time_ids(tiny_cfg(time_identity=True)) and needs_time_ids(tiny_cfg(output="anchored"))
    assert not needs_time_ids(tiny_cfg()) and not needs_time_ids(tiny_cfg(output="last"))
    assert needs_time_ids(tiny_cfg(arch="stid"))
    with pytest.raises(ConfigError, match="interval") as e:
        build_model(tiny_cfg(time_identity=True), (8, 8), 1)
    assert "retrain" not in str(e.value)  # building a model (e.g. stvfm model-info) is not loading one
    from dataclasses import asdict

    from stvfm.training.components import build_model_from_meta

    meta = {
        "model_cfg": asdict(tiny_cfg(time_identity=True)),
        "grid": [8, 8],
        "channels": 1,
        "history": 6,
        "horizon": 6,
    }
    with pytest.raises(ConfigError, match=r"metadata .* has none .*retrain"):  # a checkpoint without its interval
        build_model_from_meta(meta)
    assert build_model_from_meta({**meta, "interval_minutes": 30})[0].time_in.tod.num_embeddings == 48
    with pytest.raises(ConfigError, match=re.escape("model.output")):
        build_model(tiny_cfg(output="nope"), (8, 8), 1)


def test_paper_profile_keeps_the_paper_choices():
    p = load_params("params.yaml", ["profile=paper"])
    assert p.model.time_identity is False and p.model.output == "plain"


def test_best_checkpoint_keeps_the_interval():
    from stvfm.training.checkpoint import best_from_state

    state = {
        "model_state": {},
        "best_model_state": {},
        "loop": {"best_epoch": 0},
        "model_cfg": {},
        "interval_minutes": 30,
    }
    assert best_from_state(state)["interval_minutes"] == 30


@pytest.mark.parametrize("interval", [7, 25, 30])
def test_one_clock_every_slot_of_a_real_range_is_inside_every_table(interval):
    """One clock (stvfm.data.timefeatures): the slots time_ids gives for a real time range — here 3 days and a bit,
    starting off the hour, with an interval that does not divide a day (7, 25 min: 206 / 58 slots, the last one short)
    — all index a row of their own in every time-of-day table: the time identity, the anchored output path, STID and
    HA (day and week). A table sized with floor would miss the last slot (HA: IndexError; the embeddings: slot
    1439 // interval wrapping onto slot 0)."""
    import math

    from stvfm.baselines.ha import HistoricalAverage
    from stvfm.data.timefeatures import series_time_ids, steps_per_day
    from stvfm.models.stid import STID

    n_slots = math.ceil(24 * 60 / interval)
    assert steps_per_day(interval) == n_slots
    start = np.datetime64("2016-08-07T22:13")  # a Sunday, off the interval's grid of the day
    steps = 3 * 24 * 60 // interval + 50
    times = start + np.arange(steps) * np.timedelta64(interval, "m")
    tid = series_time_ids(start, interval, steps)
    slots = tid[:, 0]
    # the slots of the range are exactly minutes since midnight // interval: every one of 0 .. n_slots - 1 occurs
    minutes = (times - times.astype("datetime64[D]")).astype("timedelta64[m]").astype(np.int64)
    np.testing.assert_array_equal(slots, minutes // interval)
    assert set(slots.tolist()) == set(range(n_slots))

    time_in = TimeIdentity(interval, 4)
    anchored, _ = build_model(tiny_cfg(output="anchored"), (4, 4), 1, interval_minutes=interval)
    stid_vfm, _ = build_model(tiny_cfg(output="identity", time_identity=True), (4, 4), 1, interval_minutes=interval)
    stid, _ = build_model(tiny_cfg(arch="stid"), (4, 4), 1, interval_minutes=interval)
    series = np.random.default_rng(0).normal(size=(steps, 4, 4, 1))
    ha_day = HistoricalAverage.fit(series, times, interval, train=(0, steps))
    ha_week = HistoricalAverage.fit(series, times, interval, train=(0, steps), period="week")
    assert isinstance(stid, STID) and isinstance(stid_vfm.output_path.identity, STID)
    sizes = {
        "time identity": time_in.tod.num_embeddings,
        "anchored table": anchored.output_path.table.shape[0],
        "STID": stid.tod_emb.shape[0],
        "STID in ST-VFM": stid_vfm.output_path.identity.tod_emb.shape[0],
        "HA (day)": ha_day.table.shape[0],
        "HA (week) / 7": ha_week.table.shape[0] // 7,
    }
    assert sizes == dict.fromkeys(sizes, n_slots), sizes
    assert ha_day.empty_slots == 0 and ha_week.table.shape[0] == 7 * n_slots
    assert ha_week.slots.max() < ha_week.table.shape[0]
    # HA of the last (short) slot is its own average, not another slot's
    last = slots == n_slots - 1
    np.testing.assert_allclose(ha_day.table[n_slots - 1], series[last].mean(axis=0))
    # the time identity gives the last slot its own row (no wrap onto slot 0)
    with torch.no_grad():
        e = time_in(torch.from_numpy(np.array([[[n_slots - 1, 0], [0, 0]]])))
    assert not torch.allclose(e[0, 0], e[0, 1])
