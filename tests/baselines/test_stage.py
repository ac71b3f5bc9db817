"""The baselines stage end to end on a tiny synthetic city: same windows/metrics as the model, files written, STID
trained by the project's loop (with time identities), report generated from the outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stvfm.config import load_params


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, project_root):
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download

    root = tmp_path_factory.mktemp("proj")
    params = load_params(
        project_root / "params.yaml",
        [
            "data.synthetic.span_days=8",
            "datasets=[synthetic]",
            "baselines.stid.overrides.train.epochs=2",
            "baselines.stid.overrides.train.batch_size=16",
            "baselines.stid.overrides.train.max_batches_per_epoch=3",
            "baselines.arima.max_fit_steps=120",
        ],
    )
    for f in (run_download, run_grid, run_flow, run_split):
        f("synthetic", params, root)
    return root, params


def _grid_and_windows(paths):
    """The stage's inputs read directly: grid (T, H, W, C) float64, its times, the test windows' t0, the split meta."""
    import pandas as pd
    import xarray as xr

    from stvfm.io import read_json

    ds = xr.open_zarr(paths.grid_zarr, consolidated=False)
    X = ds["flow"].transpose("time", "y", "x", "channel").values.astype(np.float64)
    times = pd.DatetimeIndex(ds["time"].values)
    t0 = np.sort(pd.read_parquet(paths.windows).query("split == 'test'")["t0"].to_numpy())
    return X, times, t0, read_json(paths.split_meta)


def _errors(pred: np.ndarray, X: np.ndarray, t0: np.ndarray) -> dict:
    """MAE, RMSE and per-step MAE of forecasts (N, 6, H, W, C) against the grid's targets of the windows ``t0``."""
    err = pred - np.stack([X[t + 6 : t + 12] for t in t0])
    return {
        "mae": np.abs(err).mean(),
        "rmse": np.sqrt((err**2).mean()),
        "per_step_mae": np.abs(err).mean(axis=(0, 2, 3, 4)),
    }


def _arima_by_hand(X: np.ndarray, train: tuple[int, int], t0: np.ndarray, fit_steps: int) -> np.ndarray:
    """ARIMA(2, 0, 1) per cell and channel as the stage documents it, written out here: statsmodels fits
    (hannan_rissanen) of the centred last ``fit_steps`` train steps (constant series -> train mean; a non-invertible MA
    -> an AR(2) refit), then each window's 6 forecasts by the ARMA recursion from zero pre-sample values."""
    import warnings

    from statsmodels.tsa.arima.model import ARIMA

    a, b = train
    T, S = X.shape[0], int(np.prod(X.shape[1:]))
    flat = X.reshape(T, S)
    out = np.empty((len(t0), 6, S))
    for s in range(S):
        m = flat[a:b, s].mean()
        y = flat[:, s] - m
        fit = y[max(a, b - fit_steps) : b]
        if np.ptp(fit) == 0:
            out[:, :, s] = m
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ARIMA(fit, order=(2, 0, 1), trend="n", enforce_stationarity=False, enforce_invertibility=False).fit(
                method="hannan_rissanen"
            )
            phi, theta = res.arparams, res.maparams
            if np.any(np.abs(np.roots([theta[0], 1.0])) <= 1.0 + 1e-6):
                phi = (
                    ARIMA(fit, order=(2, 0, 0), trend="n", enforce_stationarity=False, enforce_invertibility=False)
                    .fit(method="hannan_rissanen")
                    .arparams
                )
                theta = np.zeros(1)
        eps = np.zeros(T)
        for t in range(T):
            eps[t] = (
                y[t]
                - sum(phi[i] * y[t - 1 - i] for i in range(2) if t - 1 - i >= 0)
                - (theta[0] * eps[t - 1] if t >= 1 else 0.0)
            )
        for n, t in enumerate(t0):
            last = t + 5
            hist, e = [y[last], y[last - 1]], eps[last]
            for h in range(6):
                v = phi[0] * hist[0] + phi[1] * hist[1] + (theta[0] * e if h == 0 else 0.0)
                hist = [v, hist[0]]
                out[n, h, s] = v + m
    return out.reshape(len(t0), 6, *X.shape[1:])


def test_baselines_stage_writes_metrics_with_the_split_windows(tiny, tmp_path, monkeypatch):
    """What the stage writes for persistence, HA, ARIMA and STID equals an independent computation on the grid store
    and the split's test windows: numpy for persistence and HA, statsmodels fits + the recursion written out for
    ARIMA, and for STID its trained weights (saved by the stage's own fit) scored here with numpy scaling and
    pandas clocks."""
    from stvfm.baselines import run as run_mod
    from stvfm.io import read_json
    from stvfm.paths import dataset_paths
    from stvfm.training.checkpoint import load_checkpoint
    from stvfm.training.components import build_model_from_meta

    root, params = tiny
    real_fit = run_mod.train_and_test
    monkeypatch.setattr(
        run_mod,
        "train_and_test",  # the same fit, also saving the best state it scores
        lambda *a, **k: real_fit(*a, out_dir=tmp_path / "stid", **k),
    )
    out = run_mod.run_baselines("synthetic", params, root, log_mlflow=False)
    assert list(out) == ["persistence", "ha", "arima", "stid"]
    paths = dataset_paths("synthetic", root)
    saved = read_json(paths.metrics_dir / "baselines.json")
    assert saved == json.loads(json.dumps(out))
    assert {m: read_json(paths.metrics_dir / "baselines" / f"{m}.json") for m in out} == saved  # the DVC metrics
    detail = read_json(paths.metrics_dir / "baselines_detail.json")["baselines"]
    X, times, t0, meta = _grid_and_windows(paths)
    assert len(t0) == meta["n_windows"]["test"] > 10
    assert {d["n_windows"] for d in detail.values()} == {meta["n_windows"]["test"]}
    assert detail["stid"]["time_identity"] is True and len(detail["stid"]["history"]) == 2
    assert detail["stid"]["settings"]["overrides"]["data.scaler"] == "per_cell"  # the recipe of params.yaml
    a, b = meta["bounds"]["train"]
    interval = meta["interval_minutes"]

    def check(name, pred, rel):
        want = _errors(pred, X, t0)
        assert saved[name]["mae"] == pytest.approx(want["mae"], rel=rel), name
        assert saved[name]["rmse"] == pytest.approx(want["rmse"], rel=rel), name
        assert [r["mae"] for r in detail[name]["per_step"]] == pytest.approx(want["per_step_mae"], rel=rel), name

    # persistence: the last input step, repeated
    check("persistence", np.stack([np.repeat(X[t + 5][None], 6, axis=0) for t in t0]), 1e-12)
    # HA: mean over the train split of each time-of-day slot (minutes since midnight // interval, by pandas)
    slot = np.asarray((times.hour * 60 + times.minute) // interval)
    table = {k: X[a:b][slot[a:b] == k].mean(axis=0) for k in np.unique(slot[a:b])}
    assert len(table) == 24 * 60 // interval and detail["ha"]["settings"]["empty_slots"] == 0
    check("ha", np.stack([[table[k] for k in slot[t + 6 : t + 12]] for t in t0]), 1e-12)
    assert saved["ha"]["mae"] != pytest.approx(saved["persistence"]["mae"], rel=1e-3)
    # ARIMA (max_fit_steps 120 in this fixture; measured: equal to the last bit)
    assert detail["arima"]["settings"]["order"] == [2, 0, 1] and detail["arima"]["settings"]["max_fit_steps"] == 120
    check("arima", _arima_by_hand(X, (a, b), t0, 120), 1e-9)
    # STID: the best state its fit saved, run here on windows scaled by hand (per cell, train-split mean/std) with the
    # clock of each window's steps from pandas; a float32 network (measured: rel 2e-9)
    best = load_checkpoint(tmp_path / "stid" / "best.pt")
    model = build_model_from_meta(best)[0].eval()
    model.load_state_dict(best["model_state"])
    mean, std = X[a:b].mean(axis=0), X[a:b].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x = np.stack([(X[t : t + 6] - mean) / std for t in t0]).transpose(0, 1, 4, 2, 3)  # (N, 6, C, H, W)
    steps = np.stack([np.arange(t, t + 12) for t in t0])
    tid = np.stack([slot[steps], np.asarray(times.dayofweek)[steps]], axis=-1)  # (N, 12, 2) Monday = 0
    with torch.no_grad():
        st = model(torch.from_numpy(x).float(), None, time_ids=torch.from_numpy(tid)).st.double().numpy()
    check("stid", st.transpose(0, 1, 3, 4, 2) * std + mean, 1e-5)
    # a partial re-run keeps the other results
    again = run_mod.run_baselines("synthetic", params, root, methods=["persistence"], log_mlflow=False)
    assert again == saved


def test_stid_seeds_mean_and_std(tiny):
    """baselines.stid.seeds: one STID per seed; baselines.json has the mean and the sample std over seeds."""
    import statistics

    from stvfm.baselines.fit import with_overrides
    from stvfm.baselines.run import run_baselines
    from stvfm.io import read_json
    from stvfm.paths import dataset_paths

    root, params = tiny
    p = with_overrides(params, {"baselines.stid.seeds": [0, 1]})
    out = run_baselines("synthetic", p, root, methods=["stid"], log_mlflow=False)["stid"]
    per_seed = read_json(dataset_paths("synthetic", root).metrics_dir / "baselines_detail.json")["baselines"]["stid"][
        "per_seed"
    ]
    assert [r["seed"] for r in per_seed] == [0, 1] and per_seed[0]["mae"] != per_seed[1]["mae"]
    assert out["seeds"] == 2
    assert out["mae"] == pytest.approx(statistics.fmean(r["mae"] for r in per_seed))
    assert out["rmse_std"] == pytest.approx(statistics.stdev(r["rmse"] for r in per_seed))


def test_report_from_stage_outputs(tiny):
    from stvfm.report.markdown import build_report, build_summary

    root, params = tiny
    d = build_report("synthetic", params, root)
    md = (root / "reports" / "synthetic.md").read_text()
    assert "SYNTHETIC DATA — NOT COMPARABLE" in md
    assert "| HA |" in md and "| STID |" in md
    for f in ("bars.png", "per_step.png", "forecast_maps_0.png", "forecast_maps_1.png", "learning_curves.png"):
        assert (root / "reports" / "figures" / "synthetic" / f).stat().st_size > 1000
    assert "Forecast maps (one test window, inflow)" in md and "Forecast maps (one test window, outflow)" in md
    assert d["paper_dataset"] == "bikenyc1"
    summary = build_summary(["synthetic"], params, root).read_text()
    assert "[synthetic](synthetic.md)" in summary and "SYNTHETIC — not comparable" in summary


@pytest.mark.slow  # first touch of a new MLflow sqlite store (create + migrate) alone takes ~7 s here
def test_baselines_are_logged_to_mlflow(tiny, tmp_path):
    import mlflow

    from stvfm.baselines.run import run_baselines

    root, params = tiny
    params.tracking.tracking_uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    run_baselines("synthetic", params, root, methods=["persistence", "ha"], log_mlflow=True)
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[f"{params.tracking.experiment_prefix}synthetic"])
    assert sorted(runs["tags.mlflow.runName"]) == ["baseline-ha", "baseline-persistence"]
    assert set(runs["tags.stvfm.kind"]) == {"baseline"}
    assert (runs["metrics.test_mae"] > 0).all()
    hist = mlflow.MlflowClient().get_metric_history(runs["run_id"].iloc[0], "test_mae_by_step")
    assert [m.step for m in hist] == [1, 2, 3, 4, 5, 6]
