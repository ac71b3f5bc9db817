"""STID (stvfm.models.stid): shapes on grids, the frozen forward contract, identities, learning, errors."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch

from stvfm.config import ModelConfig, STIDConfig
from stvfm.data.timefeatures import window_time_ids
from stvfm.errors import ConfigError
from stvfm.models.factory import build_model
from stvfm.models.output import ModelOutput
from stvfm.models.stid import STID


def tids(batch: int, tod: int = 0, dow: int = 0, history: int = 6, horizon: int = 6) -> torch.Tensor:
    t = torch.zeros(batch, history + horizon, 2, dtype=torch.int64)
    t[:, history - 1, 0], t[:, history - 1, 1] = tod, dow
    return t


@pytest.mark.parametrize("series", ["cell_channel", "cell"])
@pytest.mark.parametrize(("grid", "channels"), [((16, 8), 2), ((10, 20), 2), ((5, 3), 1)])
def test_stid_output_shape(grid, channels, series):
    m = STID(
        grid,
        channels,
        6,
        6,
        steps_per_day=48,
        input_dim=16,
        node_dim=8,
        tod_dim=4,
        dow_dim=4,
        num_layers=2,
        series=series,
    )
    x = torch.randn(3, 6, channels, *grid)
    out = m(x, torch.zeros_like(x), time_ids=tids(3, 5, 2))
    assert isinstance(out, ModelOutput) and out.st.shape == (3, 6, channels, *grid) and out.flow is None
    assert m.num_series == grid[0] * grid[1] * (channels if series == "cell_channel" else 1)


def test_stid_keeps_the_frozen_forward_contract():
    """forward(x, x_flow=None, time_ids=None) -> ModelOutput(st, flow=None), like every model of the project."""
    params = list(inspect.signature(STID.forward).parameters)
    assert params == ["self", "x", "x_flow", "time_ids"]
    sig = inspect.signature(STID.forward).parameters
    assert sig["x_flow"].default is None and sig["time_ids"].default is None
    m = STID((4, 5), 2, steps_per_day=24)
    x = torch.randn(2, 6, 2, 4, 5)
    t = torch.from_numpy(window_time_ids(np.array(["2024-01-01T05:00", "2024-01-03T23:00"], "datetime64[m]"), 60, 6, 6))
    assert m(x, time_ids=t).st.shape == m(x, None, t).st.shape == (2, 6, 2, 4, 5)


@pytest.mark.parametrize("series", ["cell_channel", "cell"])
def test_stid_spatial_identity_maps_to_the_right_series(series):
    torch.manual_seed(0)
    m = STID(
        (2, 3), 2, 6, 6, input_dim=4, node_dim=4, tod_dim=2, dow_dim=2, num_layers=1, series=series, time_identity=False
    ).eval()
    x = torch.zeros(1, 6, 2, 2, 3)
    base = m(x).st
    with torch.no_grad():  # series of (channel 1, y=1, x=2) / node of cell (y=1, x=2)
        m.node_emb[(1 * 6 if series == "cell_channel" else 0) + 1 * 3 + 2] += 5.0
    changed = ((m(x).st - base).abs().sum(dim=(0, 1)) > 0).numpy()  # (C, H, W)
    want = np.zeros((2, 2, 3), bool)
    want[:, 1, 2] = True
    if series == "cell_channel":
        want[0] = False
    assert (changed == want).all()


def test_stid_uses_the_time_ids_of_the_last_input_step():
    torch.manual_seed(0)
    m = STID((4, 4), 2, steps_per_day=48).eval()
    x = torch.randn(2, 6, 2, 4, 4)
    a = m(x, time_ids=tids(2, 0, 0)).st
    assert not torch.allclose(a, m(x, time_ids=tids(2, 10, 0)).st)  # another time of day
    assert not torch.allclose(a, m(x, time_ids=tids(2, 0, 3)).st)  # another day of week
    other_steps = tids(2, 0, 0)
    other_steps[:, :5] = 7  # ids of the other steps do not matter: STID reads the last input step
    other_steps[:, 6:] = 9
    torch.testing.assert_close(a, m(x, time_ids=other_steps).st)
    with pytest.raises(ValueError, match="needs time_ids"):
        m(x)
    assert STID((4, 4), 2, time_identity=False)(x).st.shape == x.shape  # without a clock: no time ids needed


def test_stid_learns_a_toy_series_with_its_clock():
    """A daily pattern that the input window cannot tell apart (flat inputs) is learnt from the time identity."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = STID((3, 4), 2, steps_per_day=24, input_dim=16, node_dim=8, tod_dim=8, dow_dim=4, num_layers=2)
        tod = torch.arange(24).repeat(2)
        t = torch.zeros(48, 12, 2, dtype=torch.int64)
        t[:, 5, 0] = tod
        x = torch.zeros(48, 6, 2, 3, 4)
        y = torch.sin(tod.float() / 24 * 6.28)[:, None, None, None, None].expand(48, 6, 2, 3, 4)
        opt = torch.optim.Adam(m.parameters(), lr=5e-3)
        losses = []
        for _ in range(150):
            loss = torch.nn.functional.l1_loss(m(x, time_ids=t).st, y)
            losses.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.1 * losses[0]


def test_stid_rejects_wrong_input():
    m = STID((4, 4), 2)
    with pytest.raises(ValueError, match="grid"):
        m(torch.randn(1, 6, 2, 4, 5), time_ids=tids(1))
    with pytest.raises(ValueError, match=re.escape("model.stid.series")):
        STID((4, 4), 2, series="node")


def test_factory_builds_stid_with_the_day_sized_clock():
    cfg = ModelConfig(arch="stid", stid=STIDConfig(num_layers=2))
    m, info = build_model(cfg, (4, 5), 2, 6, 6, interval_minutes=30)
    assert isinstance(m, STID) and info.name == "none" and info.pretrained is False
    assert m.tod_emb.shape == (48, 32) and m.dow_emb.shape == (7, 32) and len(m.encoder) == 2
    assert build_model(cfg, (4, 5), 2, interval_minutes=60)[0].tod_emb.shape[0] == 24
    assert build_model(cfg, (4, 5), 2, interval_minutes=7)[0].tod_emb.shape[0] == 206  # every slot 0..205
    no_clock = ModelConfig(arch="stid", stid=STIDConfig(time_identity=False))
    assert not hasattr(build_model(no_clock, (4, 5), 2)[0], "tod_emb")
    with pytest.raises(ConfigError, match="interval"):
        build_model(cfg, (4, 5), 2)
    with pytest.raises(ConfigError, match=re.escape("model.stid.series")):
        build_model(ModelConfig(arch="stid", stid=STIDConfig(series="x")), (4, 5), 2, interval_minutes=60)


def test_stid_dropout_is_the_reference_value_and_only_in_training():
    assert STIDConfig().dropout == 0.15  # BasicTS's STID: nn.Dropout(p=0.15) in every residual MLP layer
    torch.manual_seed(0)
    m, _ = build_model(ModelConfig(arch="stid"), (4, 5), 2, interval_minutes=30)
    assert all(layer.drop.p == 0.15 for layer in m.encoder)
    x, t = torch.randn(2, 6, 2, 4, 5), tids(2, 7, 3)
    # training: two forward passes of the same input differ (a fresh dropout mask each), so does the first from eval
    m.train()
    a, b = m(x, time_ids=t).st, m(x, time_ids=t).st
    frac = ((a - b).abs() > 1e-6).float().mean().item()
    assert frac > 0.5, f"only {frac:.0%} of the outputs differ between two training passes: dropout is not active"
    m.eval()
    e1, e2 = m(x, time_ids=t).st, m(x, time_ids=t).st
    assert torch.equal(e1, e2), f"eval passes differ (max {(e1 - e2).abs().max():.3g}): dropout is active in eval"
    assert not torch.allclose(a, e1)
    # eval is the network without dropout: the same weights with p = 0 give it in train mode too, pass after pass
    for layer in m.encoder:
        layer.drop.p = 0.0
    m.train()
    torch.testing.assert_close(m(x, time_ids=t).st, e1, rtol=0, atol=0)
    # model.stid.dropout = 0: train mode is deterministic
    m0, _ = build_model(ModelConfig(arch="stid", stid=STIDConfig(dropout=0.0)), (4, 5), 2, interval_minutes=30)
    m0.train()
    assert torch.equal(m0(x, time_ids=t).st, m0(x, time_ids=t).st), "dropout 0: train passes must be identical"
    with pytest.raises(ConfigError, match=re.escape("model.stid.dropout")):
        build_model(ModelConfig(arch="stid", stid=STIDConfig(dropout=1.0)), (4, 5), 2, interval_minutes=30)


def test_stid_time_inputs_feed_each_steps_clock_to_the_window_embedding():
    """model.stid.time_inputs (BasicTS's input_dim 3): value, time in day, day in week per input step."""
    torch.manual_seed(0)
    for series, per in (("cell_channel", 1), ("cell", 2)):
        m = STID((4, 5), 2, series=series, time_inputs=True, time_identity=False, dropout=0.0)
        assert m.input_proj.in_features == 6 * (per + 2)
        x = torch.randn(2, 6, 2, 4, 5)
        a = m(x, time_ids=tids(2)).st
        later = tids(2).clone()
        later[:, :6, 0] = (later[:, :6, 0] + 5) % 48  # another clock, same values
        assert a.shape == (2, 6, 2, 4, 5) and not torch.allclose(a, m(x, time_ids=later).st)
        with pytest.raises(ValueError, match="time_ids"):
            m(x)
    cfg = ModelConfig(arch="stid", stid=STIDConfig(time_identity=False, time_inputs=True))
    from stvfm.models.factory import needs_time_ids

    assert needs_time_ids(cfg) and needs_time_ids(
        {"arch": "stid", "stid": {"time_identity": False, "time_inputs": True}}
    )
    with pytest.raises(ConfigError, match="interval"):
        build_model(cfg, (4, 5), 2)
