"""Batch forecasts: every window of a split scored with Ray Data -> ``forecasts/<ds>.zarr``.

``run_forecast(params, dataset, root, split=..., model=...)``: the windows of the split (``windows.parquet``) become a
Ray Dataset of window numbers, one block per batch; ``map_batches`` runs :class:`WindowScorer` (a callable class:
**one model per actor**, ``forecast.concurrency`` actors with ``forecast.num_cpus``/``forecast.num_gpus`` each).
Each actor rebuilds the network from the installed package out of the version's JSON config and safetensors bytes
(handed over through the object store, never pickled model objects) and reads its windows from the raw series
(original scale, also in the object store). ``forecast.use_ray: false`` runs the same scorer in a plain loop.

The model: ``--model`` (an MLflow model URI such as ``models:/stvfm-<ds>@champion``, or a local model-version
folder); by default the version the train stage exported to ``models/<ds>/version/`` — the same tensors and config
as the version that stage registered (named in ``models/<ds>/train.json``), so the DVC stage depends only on files
DVC tracks.

Output: an xarray Dataset in Zarr, variable ``forecast`` (origin_time, step, y, x, channel) on the original scale;
``origin_time`` is the time of each window's last input step, ``step`` 1..horizon, ``valid_time`` (origin_time,
step) the time each value forecasts; attributes name the dataset, split, model source and model version.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.cluster.ray_address import init_ray, ray_env
from stvfm.config import Params, check_dataset_name
from stvfm.errors import DataError
from stvfm.io import atomic_path, clean_stale, read_json, target_lock
from stvfm.paths import dataset_paths
from stvfm.serving.version import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_parts,
    is_local_version,
    read_config,
    read_weights_bytes,
    verify_digest,
)

log = logging.getLogger(__name__)
FORECAST_DIR = "forecasts"


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class ModelSource:
    config: dict[str, Any]  # config.json of the version
    weights: bytes  # safetensors bytes
    source: str  # what was asked for (URI, folder, models/<ds>/version)
    version: str  # registered name/version, or a note that it is not registered


def _verified(folder: Path, where: str, expect: dict[str, str] | None = None) -> tuple[dict[str, Any], bytes]:
    """(config, weights bytes) of a version folder whose parts agree (digest, metadata, scaler, tensors): refused
    here, in one line, before anything is shipped to the actors."""
    config = read_config(folder / CONFIG_FILE, where)
    weights = read_weights_bytes(folder / WEIGHTS_FILE, where)
    check_parts(config, verify_digest(config, weights, where, expect), where)
    return config, weights


def model_source(params: Params, dataset: str, root: Path, model: str | None) -> ModelSource:
    """The version to score with: ``model`` (an MLflow model URI or a local model-version folder), by default the one
    the train stage exported to ``models/<ds>/version/`` (the registered version's tensors and config)."""
    paths = dataset_paths(dataset, root, params.data.root)
    if model is None:
        folder = paths.model_version_dir
        if not is_local_version(folder):
            raise DataError(
                f"no model version in models/{dataset}/version (run the train stage first: "
                f"`dvc repro train@{dataset}` or `stvfm train {dataset}`), or give --model"
            )
        config, weights = _verified(folder, str(folder))
        tj = paths.model_dir / "train.json"
        reg = (read_json(tj).get("model") or {}) if tj.is_file() else {}
        version = f"{reg['registered_model']}/{reg['version']}" if reg.get("version") else "not registered"
        return ModelSource(config, weights, f"models/{dataset}/version", version)
    if is_local_version(model):
        return ModelSource(*_verified(Path(model), str(model)), str(model), "local folder")
    from stvfm.serving.registry import fetch_version, registered_digest, registered_version  # MLflow: a model URI

    with tempfile.TemporaryDirectory(prefix="stvfm-model-") as tmp:
        folder = fetch_version(model, tmp)
        config, weights = _verified(folder, model, registered_digest(model))
        return ModelSource(config, weights, model, registered_version(model))


# ---------------------------------------------------------------------------------------------- the windows
@dataclass
class SplitWindows:
    series: np.ndarray  # (S, H, W, C) float32, original scale, steps [base, hi) of the grid
    starts: np.ndarray  # (n,) index into ``series`` of each window's first input step (minus one when available)
    origin: np.ndarray  # (n,) datetime64[s]: time of each window's last input step
    base: int
    channel_names: list[str]
    interval_minutes: int


def split_windows(paths, split: str, history: int) -> SplitWindows:
    import pandas as pd
    import xarray as xr

    for p in (paths.split_meta, paths.windows, paths.grid_zarr):
        if not p.exists():
            raise DataError(
                f"missing split-stage output; run `dvc repro split@{paths.name}`", dataset=paths.name, path=str(p)
            )
    meta = read_json(paths.split_meta)
    lo, hi = (int(v) for v in meta["bounds"][split])
    t0 = pd.read_parquet(paths.windows, filters=[("split", "==", split)])["t0"].to_numpy(np.int64)
    if len(t0) == 0:
        raise DataError(f"the {split} split has no windows", dataset=paths.name, path=str(paths.windows))
    base = max(lo - 1, 0)  # one step before the split: the first window's true input flow
    try:
        ds = xr.open_zarr(paths.grid_zarr, consolidated=False)
        series = ds["flow"].isel(time=slice(base, hi)).transpose("time", "y", "x", "channel").values
    except Exception as e:
        raise DataError(
            f"cannot read the grid store ({str(e).splitlines()[0][:200] if str(e) else e!r}); "
            f"rerun `dvc repro grid@{paths.name}`",
            path=str(paths.grid_zarr),
        ) from None
    series = np.ascontiguousarray(series, dtype=np.float32)
    starts = t0 - 1 - base
    if (starts < 0).any():  # a window at the very start of the series has no step before it: its flow starts at 0
        series = np.concatenate([series[:1], series])
        starts, base = starts + 1, base - 1
    start = np.datetime64(meta["start"], "s")
    step = np.timedelta64(int(meta["interval_minutes"]), "m")
    origin = start + (t0 + history - 1) * step
    return SplitWindows(
        series,
        starts,
        origin.astype("datetime64[s]"),
        base,
        [str(c) for c in meta.get("channel_names") or []],
        int(meta["interval_minutes"]),
    )


# ---------------------------------------------------------------------------------------------- the scorer
class WindowScorer:
    """Ray Data callable class: one model per actor. ``__call__({"data": window numbers}) -> {"window",
    "forecast" (B, horizon, H, W, C)}``."""

    def __init__(
        self,
        config: dict[str, Any],
        weights: Any,
        series: Any,
        starts: Any,
        origin_s: Any,
        torch_threads: int = 1,
        device: str = "cpu",
    ):
        import torch
        from safetensors.torch import load

        from stvfm.serving.forecaster import Forecaster

        def get(v):  # large inputs arrive as [ObjectRef] (nested: a top-level ref would pin actor restarts to it)
            if isinstance(v, list) and len(v) == 1 and type(v[0]).__name__ == "ObjectRef":
                import ray

                return ray.get(v[0])
            return v

        torch.set_num_threads(int(torch_threads))
        weights, self.series, self.starts, self.origin_s = get(weights), get(series), get(starts), get(origin_s)
        self.f = Forecaster.from_version(config, load(bytes(weights)), where=str(config.get("dataset")))
        if device != "cpu":
            self.f.to(device)
        self.L = self.f.history + 1
        self.t_ready = time.time()  # model loaded: when this actor can score (benchmarks separate start-up)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t_start = time.time()
        w = np.asarray(batch["data"], dtype=np.int64)
        idx = self.starts[w][:, None] + np.arange(self.L)[None, :]
        x = self.series[idx]  # (B, L, H, W, C)
        y = self.f.predict(x, self.origin_s[w], check=False)
        n = len(w)
        return {
            "window": w,
            "forecast": y,
            "t_ready": np.full(n, self.t_ready),
            "t_start": np.full(n, t_start),
            "t_done": np.full(n, time.time()),
        }


def _batches(n: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]


def score_plain(scorer_args: dict[str, Any], n: int, batch_size: int) -> np.ndarray:
    """The same scoring in a plain loop in this process (one model)."""
    scorer = WindowScorer(**scorer_args)
    return np.concatenate([scorer({"data": b})["forecast"] for b in _batches(n, batch_size)])


def ensure_ray(num_cpus: int | None = None) -> float:
    """A private local Ray (``address="local"``) unless RAY_ADDRESS names a cluster; returns seconds spent."""
    ray_env()
    import ray

    t = time.perf_counter()
    if not ray.is_initialized():  # RAY_ADDRESS is joined within a bounded time, else a private local Ray
        init_ray(None, logging_level="WARNING", log_to_driver=False, include_dashboard=False, num_cpus=num_cpus)
    return time.perf_counter() - t


def score_ray(
    scorer_args: dict[str, Any],
    n: int,
    batch_size: int,
    *,
    concurrency: int,
    num_cpus: float,
    num_gpus: float,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Ray Data: a dataset of window numbers (one block per batch, so batches are the plain loop's), map_batches
    with :class:`WindowScorer` on ``concurrency`` actors; results in window order."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    args = dict(scorer_args)
    for k in ("weights", "series", "starts", "origin_s"):
        args[k] = [ray.put(args[k])]
    batches = _batches(n, batch_size)
    n_batches = len(batches)
    ds = ray.data.from_numpy(batches)
    pool = ray.data.ActorPoolStrategy(size=max(1, min(int(concurrency), n_batches)))
    out = ds.map_batches(
        WindowScorer,
        fn_constructor_kwargs=args,
        batch_size=batch_size,
        batch_format="numpy",
        compute=pool,
        num_cpus=num_cpus,
        num_gpus=num_gpus or None,
    )
    wins, ys, ready, done, busy = [], [], [], [], 0.0
    for b in out.iter_batches(batch_size=None, batch_format="numpy"):
        wins.append(b["window"])
        ys.append(b["forecast"])
        ready.append(b["t_ready"].min())
        done.append(b["t_done"].max())
        busy += float(np.sum(np.unique(np.stack([b["t_start"], b["t_done"]], 1), axis=0) @ np.array([-1.0, 1.0])))
    if timings is not None:  # wall clock: first actor ready -> last batch scored; busy: seconds inside the model calls
        timings.update(
            first_ready=float(min(ready)), last_done=float(max(done)), busy=busy, last_ready=float(max(ready))
        )
    w = np.concatenate(wins)
    y = np.concatenate(ys)
    if not np.array_equal(np.sort(w), np.arange(n)):
        raise RuntimeError(f"Ray Data returned {len(w)} forecasts for {n} windows")
    return y[np.argsort(w, kind="stable")]


# ---------------------------------------------------------------------------------------------- the stage
def write_forecasts(path: Path, y: np.ndarray, win: SplitWindows, attrs: dict[str, Any], chunk_mb: float) -> Path:
    import xarray as xr

    n, horizon = y.shape[:2]
    steps = np.arange(1, horizon + 1)
    origin = win.origin.astype("datetime64[ns]")
    valid = origin[:, None] + steps[None, :] * np.timedelta64(win.interval_minutes, "m")
    names = win.channel_names if len(win.channel_names) == y.shape[-1] else [f"ch{i}" for i in range(y.shape[-1])]
    ds = xr.Dataset(
        {"forecast": (("origin_time", "step", "y", "x", "channel"), y.astype(np.float32))},
        coords={
            "origin_time": origin,
            "step": steps,
            "channel": np.array(names, dtype=object),
            "valid_time": (("origin_time", "step"), valid.astype("datetime64[ns]")),
        },
        attrs={k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in attrs.items()},
    )
    per_origin = max(1, int(np.prod(y.shape[1:])) * 4)
    chunk = max(1, min(n, int(chunk_mb * 2**20 // per_origin)))
    enc = {"forecast": {"chunks": (chunk, *y.shape[1:])}}
    with atomic_path(path) as tmp:
        from stvfm.data.store import write_store

        write_store(ds, tmp, enc)  # consolidated metadata: xr.open_zarr(path) opens it without a warning
    return path


def run_forecast(
    params: Params,
    dataset: str,
    root: str | Path = ".",
    *,
    split: str | None = None,
    model: str | None = None,
    use_ray: bool | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    check_dataset_name(dataset)  # it becomes a path
    target = Path(out) if out else Path(root).resolve() / FORECAST_DIR / f"{dataset}.zarr"
    with target_lock(target, f"the forecasts of '{dataset}'"):
        clean_stale(target)  # temp folders a killed run left beside it (a live run's are behind the lock)
        return _run_forecast(params, dataset, root, target, split=split, model=model, use_ray=use_ray)


def _run_forecast(
    params: Params,
    dataset: str,
    root: str | Path,
    target: Path,
    *,
    split: str | None,
    model: str | None,
    use_ray: bool | None,
) -> dict[str, Any]:
    t_all = time.perf_counter()
    root = Path(root).resolve()
    fc = params.forecast
    split = split or fc.split
    if split not in ("train", "val", "test"):
        raise DataError(f"--split: '{split}' is not one of train, val, test")
    use_ray = fc.use_ray if use_ray is None else use_ray
    paths = dataset_paths(dataset, root, params.data.root)
    src = model_source(params, dataset, root, model)
    cfg = src.config
    win = split_windows(paths, split, int(cfg["history"]))
    meta = read_json(paths.split_meta)
    got = (list(meta["grid"]), int(meta["channels"]), int(meta["interval_minutes"]))
    want = (list(cfg["grid"]), int(cfg["channels"]), int(cfg["interval_minutes"]))
    if got != want:
        raise DataError(
            f"the model ({src.source}) was trained for grid {want[0]}, {want[1]} channel(s), "
            f"{want[2]}-minute steps; the {split} split has {got[0]}, {got[1]}, {got[2]}",
            dataset=dataset,
        )
    n = len(win.starts)
    origin_s = win.origin.astype("datetime64[s]").astype(np.int64)
    device = "cuda" if fc.num_gpus > 0 else "cpu"
    args = dict(
        config=cfg,
        weights=src.weights,
        series=win.series,
        starts=win.starts,
        origin_s=origin_s,
        torch_threads=fc.torch_threads,
        device=device,
    )
    t = time.perf_counter()
    ray_init_s = 0.0
    if use_ray:
        ray_init_s = ensure_ray()
        t = time.perf_counter()
        y = score_ray(args, n, fc.batch_size, concurrency=fc.concurrency, num_cpus=fc.num_cpus, num_gpus=fc.num_gpus)
    else:
        y = score_plain(args, n, fc.batch_size)
    score_s = time.perf_counter() - t
    attrs = {
        "dataset": dataset,
        "split": split,
        "model": src.source,
        "model_version": src.version,
        "history": int(cfg["history"]),
        "horizon": int(cfg["horizon"]),
        "interval_minutes": int(cfg["interval_minutes"]),
        "time_identity": bool(cfg.get("time_identity")),
        "scale": "original",
        "origin_time": "time of each window's last input step",
        "engine": "ray-data" if use_ray else "plain",
    }
    write_forecasts(target, y, win, attrs, params.data.chunk_mb)
    return {
        "dataset": dataset,
        "split": split,
        "windows": n,
        "out": str(target),
        "model": src.source,
        "model_version": src.version,
        "engine": attrs["engine"],
        "ray_init_s": round(ray_init_s, 2),
        "score_s": round(score_s, 2),
        "windows_per_s": round(n / score_s, 1) if score_s > 0 else None,
        "seconds": round(time.perf_counter() - t_all, 2),
    }
