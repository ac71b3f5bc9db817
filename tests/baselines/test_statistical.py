"""Persistence and HA exact on constructed series; ARIMA sane on an AR(1) series; the shared scorer."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stvfm.baselines.arima import ArimaForecaster, ArimaSettings
from stvfm.baselines.common import ErrorAccumulator, SeriesSplit, score
from stvfm.baselines.ha import HistoricalAverage, slot_index
from stvfm.baselines.persistence import persistence_forecast
from stvfm.errors import ConfigError


def hourly(n, start="2024-01-01T00:00"):
    return np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(60, "m")


def test_persistence_repeats_last_input_step():
    s = np.arange(40, dtype=float).reshape(20, 2, 1)  # (T, H, W)
    pred = persistence_forecast(s, np.array([0, 3, 8]), history=6, horizon=6)
    assert pred.shape == (3, 6, 2, 1)
    for i, t0 in enumerate([0, 3, 8]):
        assert np.array_equal(pred[i], np.repeat(s[t0 + 5][None], 6, axis=0))


def test_ha_averages_same_slot_of_train_days_exactly():
    days, spd = 10, 24
    t = np.arange(days * spd)
    # value = 10*slot + day -> HA over train days 0..6 of slot s = 10*s + 3
    s = (10.0 * (t % spd) + t // spd).reshape(-1, 1, 1, 1) * np.ones((1, 2, 3, 2))
    ha = HistoricalAverage.fit(s, hourly(len(t)), 60, train=(0, 7 * spd))
    assert ha.empty_slots == 0
    t0 = np.array([7 * spd + 2, 8 * spd + 20])
    pred = ha.forecast(t0, 6, 6)
    assert pred.shape == (2, 6, 2, 3, 2)
    target_slots = (t0[:, None] + 6 + np.arange(6)) % spd
    expected = 10.0 * target_slots + 3.0
    assert np.array_equal(pred, np.broadcast_to(expected[..., None, None, None], pred.shape))


def test_ha_uses_train_split_only():
    spd = 24
    s = np.ones((5 * spd, 1, 1, 1))
    s2 = s.copy()
    s2[3 * spd :] = 1000.0  # change val/test only
    a = HistoricalAverage.fit(s, hourly(len(s)), 60, train=(0, 3 * spd)).table
    b = HistoricalAverage.fit(s2, hourly(len(s)), 60, train=(0, 3 * spd)).table
    assert np.array_equal(a, b)


def test_ha_empty_slots_fall_back_to_train_mean():
    s = np.arange(48, dtype=float).reshape(48, 1, 1, 1)
    ha = HistoricalAverage.fit(s, hourly(48), 60, train=(0, 12))  # only slots 0..11 seen
    assert ha.empty_slots == 12
    assert ha.table[5, 0, 0, 0] == 5.0
    assert ha.table[15, 0, 0, 0] == pytest.approx(np.mean(np.arange(12)))


def test_ha_slots_30min_and_week():
    t = np.datetime64("2024-01-01T00:00", "ns") + np.arange(4) * np.timedelta64(30, "m")  # a Monday
    assert list(slot_index(t, 30)) == [0, 1, 2, 3]
    assert list(slot_index(t, 30, "week")) == [0, 1, 2, 3]
    sun = np.array([np.datetime64("2024-01-07T01:00", "ns")])
    assert slot_index(sun, 60, "week")[0] == 6 * 24 + 1
    with pytest.raises(ConfigError, match="period"):
        slot_index(t, 30, "month")


def make_split(series, times, train, test_t0):
    return SeriesSplit(
        "toy",
        series,
        times,
        60,
        {"train": train, "val": train, "test": (train[1], len(series))},
        {"train": np.array([0]), "val": np.array([0]), "test": np.asarray(test_t0)},
    )


def test_score_matches_hand_computed_errors_and_scale():
    s = np.arange(30, dtype=float).reshape(30, 1, 1, 1)
    data = make_split(s, hourly(30), (0, 10), [10, 12])
    res = score(data, lambda ser, t0: persistence_forecast(ser, t0))
    # persistence error at step h is h (series increases by 1 each step)
    assert res["mae"] == pytest.approx(3.5)
    assert res["rmse"] == pytest.approx(np.sqrt(np.mean(np.arange(1, 7) ** 2)))
    assert [r["mae"] for r in res["per_step"]] == pytest.approx([1, 2, 3, 4, 5, 6])
    data.scale_1e3 = True
    assert score(data, lambda ser, t0: persistence_forecast(ser, t0))["mae"] == pytest.approx(3500)


def test_accumulator_agrees_with_project_metrics():
    from stvfm.metrics import mae_np, rmse_np

    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(5, 6, 2, 3, 4)), rng.normal(size=(5, 6, 2, 3, 4))
    acc = ErrorAccumulator(6)
    acc.add(p[:2], y[:2])
    acc.add(p[2:], y[2:])
    r = acc.result()
    assert r["mae"] == pytest.approx(mae_np(y, p))
    assert r["rmse"] == pytest.approx(rmse_np(y, p))


def test_arima_on_ar1_series_is_sane():
    rng = np.random.default_rng(1)
    n, phi, mu = 700, 0.7, 5.0
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.normal()
    series = np.stack([x + mu, np.zeros(n)], axis=1).reshape(n, 1, 2)  # second series constant (empty cell)
    fc = ArimaForecaster.fit(series, (0, 500), ArimaSettings(order=(1, 0, 0)))
    assert fc.constant_series == 1 and fc.failed_fits == 0
    assert fc.ar[0, 0] == pytest.approx(phi, abs=0.1)
    t0 = np.arange(500, n - 12)
    pred = fc.forecast(series, t0)
    assert pred.shape == (len(t0), 6, 1, 2)
    assert np.all(pred[..., 1] == 0.0)  # constant series -> its train mean
    # 1-step forecast = mean + phi_hat * (last input - mean), h-step decays as phi_hat^h
    m, ph = fc.means[0], fc.ar[0, 0]
    last = series[t0 + 5, 0, 0]
    for h in range(6):
        assert pred[:, h, 0, 0] == pytest.approx(m + ph ** (h + 1) * (last - m), rel=1e-6, abs=1e-6)
    truth = series[t0[:, None] + 6 + np.arange(6)]
    pers = persistence_forecast(series, t0)
    assert np.abs(pred - truth)[..., 0].mean() < np.abs(pers - truth)[..., 0].mean()


def _statsmodels_forecast(y: np.ndarray, order, ar: np.ndarray, ma: np.ndarray, horizon: int = 6) -> np.ndarray:
    """statsmodels' own ARIMA forecast of ``y`` (state space, Kalman filter) with the parameters fixed (no fit)."""
    import warnings

    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ARIMA(y, order=order, trend="n").filter(np.r_[ar, ma, 1.0]).forecast(horizon)


def test_arima_d1_forecast_is_statsmodels_forecast_with_the_fitted_params():
    """d = 1: the differences' ARMA recursion cumulated onto the last input value is what statsmodels forecasts for an
    ARIMA(1,1,0) with the same coefficient, on an integrated AR(1) (phi 0.6, so the forecast is far from
    persistence and the cumulation shows)."""
    rng = np.random.default_rng(2)
    n, phi = 600, 0.6
    dx = np.zeros(n)
    for i in range(1, n):
        dx[i] = phi * dx[i - 1] + rng.normal()
    x = (np.cumsum(dx) + 50.0).reshape(n, 1)
    fc = ArimaForecaster.fit(x, (0, 400), ArimaSettings(order=(1, 1, 0)))
    assert fc.ar[0, 0] == pytest.approx(phi, abs=0.1)
    t0 = np.array([400, 480, 580])
    pred = fc.forecast(x, t0)
    for i, t in enumerate(t0):  # the forecast conditions on everything up to the window's last input step
        want = _statsmodels_forecast(x[: t + 6, 0], (1, 1, 0), fc.ar[0], fc.ma[0])
        np.testing.assert_allclose(pred[i, :, 0], want, rtol=0, atol=1e-8)
    assert np.abs(pred[:, :, 0] - x[t0 + 5]).max() > 1.0  # not persistence


def test_arima_default_order_forecast_is_statsmodels_forecast():
    """The default order (2, 0, 1), with its MA part: our recursion (innovations from zero pre-sample values, the
    series centred on its train mean) equals statsmodels' exact Kalman-filter forecast with the same fitted
    coefficients once the pre-sample is forgotten (hundreds of steps here; measured ~1e-10)."""
    rng = np.random.default_rng(3)
    n = 600
    e, y = rng.normal(size=n), np.zeros(n)
    for i in range(2, n):
        y[i] = 0.5 * y[i - 1] + 0.2 * y[i - 2] + e[i] + 0.4 * e[i - 1]
    series = (y + 10.0).reshape(n, 1)
    fc = ArimaForecaster.fit(series, (0, 400), ArimaSettings())
    assert fc.settings.order == (2, 0, 1) and fc.ma[0, 0] != 0.0 and fc.ar_fallbacks == 0
    t0 = np.array([400, 480, 580])
    pred = fc.forecast(series, t0)
    m = fc.means[0]
    for i, t in enumerate(t0):
        want = _statsmodels_forecast(series[: t + 6, 0] - m, (2, 0, 1), fc.ar[0], fc.ma[0]) + m
        np.testing.assert_allclose(pred[i, :, 0], want, rtol=0, atol=1e-6)


def test_arima_settings_validation():
    assert ArimaSettings.from_params({"order": [3, 1, 0]}).order == (3, 1, 0)
    with pytest.raises(ConfigError, match="order"):
        ArimaSettings.from_params({"order": [0, 1, 0]})
    with pytest.raises(ConfigError, match="unknown"):
        ArimaSettings.from_params({"ordr": [1, 0, 0]})
    with pytest.raises(ConfigError, match="method"):
        ArimaSettings.from_params({"method": "magic"})


def test_baselines_config_validation():
    from stvfm.baselines.run import BaselinesConfig

    cfg = BaselinesConfig.from_params({"stid": {"overrides": {"train": {"epochs": 3}}}})
    assert cfg.stid_overrides["train.epochs"] == 3 and cfg.stid_overrides["model.arch"] == "stid"
    with pytest.raises(ConfigError, match=re.escape("baselines.methods")):
        BaselinesConfig.from_params({"methods": ["lstm"]})
    with pytest.raises(ConfigError, match="unknown key"):
        BaselinesConfig.from_params({"sarima": {}})
    with pytest.raises(ConfigError, match="torch_threads"):
        BaselinesConfig.from_params({"stid": {"torch_threads": 0}})
    assert BaselinesConfig.from_params({}).stid_seeds == [0]
    assert BaselinesConfig.from_params({"stid": {"seeds": [0, 1, 2]}}).stid_seeds == [0, 1, 2]
    for bad in ([], [1, 1], ["a"], 3):
        with pytest.raises(ConfigError, match=re.escape("baselines.stid.seeds")):
            BaselinesConfig.from_params({"stid": {"seeds": bad}})
    with pytest.raises(ConfigError, match=r"baselines\.stid: unknown key.*time_identity"):
        BaselinesConfig.from_params({"stid": {"time_identity": True}})


def test_params_yaml_holds_the_stid_reference_recipe(project_root):
    """baselines.stid in params.yaml is BasicTS's STID recipe, and it validates as params."""
    from stvfm.baselines.fit import with_overrides
    from stvfm.baselines.run import BaselinesConfig
    from stvfm.config import load_params

    p = load_params(project_root / "params.yaml", ["profile=real"])  # the full budget; the default DAG caps epochs
    assert (
        BaselinesConfig.from_params(load_params(project_root / "params.yaml").baselines).stid_overrides["train.epochs"]
        == 20
    )
    cfg = BaselinesConfig.from_params(p.baselines)
    sp = with_overrides(p, cfg.stid_overrides)
    assert cfg.stid_seeds == [0]
    assert sp.model.arch == "stid" and sp.data.scaler == "per_cell" and not sp.model.bf16
    t = sp.train
    assert (t.loss, t.loss_scale, t.optimizer, t.lr, t.weight_decay) == ("mae", "original", "adam", 0.002, 1e-4)
    assert (t.scheduler, t.milestones, t.gamma, t.epochs, t.patience) == ("multistep", [1, 50, 80], 0.5, 100, 15)
    assert t.max_batches_per_epoch is None and t.use_ray is False
    s = sp.model.stid
    assert (s.input_dim, s.node_dim, s.tod_dim, s.dow_dim, s.num_layers, s.time_identity) == (32, 32, 32, 32, 3, True)
    # BasicTS's network and config: dropout 0.15 in each residual layer, input_dim 3 (value, time in day, day in
    # week), gradient clipping at norm 5, batch 64
    assert (s.dropout, s.time_inputs, t.grad_clip, t.batch_size) == (0.15, True, 5.0, 64)
