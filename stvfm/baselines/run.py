"""Run the baselines of one dataset under the same splits, windows and metrics as the model.

Writes ``metrics/<ds>/baselines/<name>.json`` (numbers only, one file per baseline: the DVC metrics, one row each in
``dvc metrics show``), ``metrics/<ds>/baselines.json`` (``{name: {mae, rmse}}``; STID trained with several
``baselines.stid.seeds`` reports the mean over seeds plus ``mae_std``/``rmse_std``/``seeds``),
``metrics/<ds>/baselines_detail.json`` (per-step errors, window counts, seconds, settings, per-seed results) and logs
one MLflow run per baseline in the dataset's experiment.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvfm.baselines.arima import ArimaForecaster, ArimaSettings
from stvfm.baselines.common import load_series_split, score
from stvfm.baselines.fit import train_and_test
from stvfm.baselines.ha import HistoricalAverage
from stvfm.baselines.persistence import persistence_forecast
from stvfm.config import Params, flatten, with_overrides
from stvfm.errors import ConfigError
from stvfm.io import atomic_path, read_json, write_json
from stvfm.paths import dataset_paths
from stvfm.tracking import log_result

log = logging.getLogger(__name__)

METHODS = ("persistence", "ha", "arima", "stid")
# STID is trained by the project's loop with these overrides on top of params.yaml; ``baselines.stid.overrides`` (the
# reference recipe, in params.yaml) extends them. ``model.arch: stid`` makes stvfm.models.factory build
# stvfm.models.stid.STID.
STID_DEFAULT_OVERRIDES = {"model.arch": "stid", "train.use_ray": False, "train.max_batches_per_epoch": None}


@dataclass
class BaselinesConfig:
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    ha_period: str = "day"
    arima: ArimaSettings = field(default_factory=ArimaSettings)
    stid_overrides: dict[str, Any] = field(default_factory=lambda: dict(STID_DEFAULT_OVERRIDES))
    stid_seeds: list[int] = field(default_factory=lambda: [0])  # train.seed of each STID run (mean ± std if several)
    stid_torch_threads: int | None = 1  # the tiny MLP trains faster on 1 thread than on 2 contended ones

    def stid_params(self, params: Params, seed: int) -> Params:
        """``params`` with the STID recipe (``stid_overrides``) and ``train.seed`` applied: one STID run."""
        return with_overrides(params, {**self.stid_overrides, "train.seed": seed})

    @classmethod
    def from_params(cls, section: dict | None) -> BaselinesConfig:
        s = dict(section or {})
        unknown = set(s) - {"methods", "ha", "arima", "stid"}
        if unknown:
            raise ConfigError(
                f"params.yaml baselines: unknown key(s) {', '.join(sorted(unknown))}; allowed: methods, ha, arima, stid"
            )
        methods = list(s.get("methods", METHODS))
        bad = [m for m in methods if m not in METHODS]
        if bad:
            raise ConfigError(
                f"params.yaml baselines.methods: unknown {', '.join(bad)}; choose from {', '.join(METHODS)}"
            )
        ha = dict(s.get("ha") or {})
        if set(ha) - {"period"}:
            raise ConfigError("params.yaml baselines.ha: only 'period' (day | week) is allowed")
        stid = dict(s.get("stid") or {})
        if set(stid) - {"overrides", "seeds", "torch_threads"}:
            raise ConfigError(
                f"params.yaml baselines.stid: unknown key(s) "
                f"{', '.join(sorted(set(stid) - {'overrides', 'seeds', 'torch_threads'}))}; allowed: "
                "overrides (a mapping of params, e.g. {model: {stid: {time_identity: false}}}), seeds "
                "(list of ints), torch_threads (int or null)"
            )
        overrides = dict(STID_DEFAULT_OVERRIDES)
        extra = stid.get("overrides") or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"params.yaml baselines.stid.overrides: expected a mapping of params, got {extra!r}")
        overrides.update(flatten(extra))  # nested {train: {epochs: 10}} or dotted {train.epochs: 10}
        overrides["model.arch"] = "stid"
        threads = stid.get("torch_threads", 1)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(
                f"params.yaml baselines.stid.torch_threads: expected a positive integer or null, got {threads!r}"
            )
        seeds = stid.get("seeds", [0])
        if (
            not isinstance(seeds, list)
            or not seeds
            or len(set(seeds)) != len(seeds)
            or any(isinstance(v, bool) or not isinstance(v, int) for v in seeds)
        ):
            raise ConfigError(
                f"params.yaml baselines.stid.seeds: expected a non-empty list of distinct integers, got {seeds!r}"
            )
        return cls(
            methods,
            str(ha.get("period", "day")),
            ArimaSettings.from_params(s.get("arima")),
            overrides,
            list(seeds),
            threads,
        )


def run_baselines(
    name: str, params: Params, root: str | Path = ".", methods: list[str] | None = None, log_mlflow: bool = True
) -> dict[str, dict[str, float]]:
    """Score the configured baselines on ``name``'s test windows; write the metrics files; return
    ``{name: {mae, rmse}}``."""
    root = Path(root)
    cfg = BaselinesConfig.from_params(params.baselines)
    subset = bool(methods)
    methods = methods or cfg.methods
    paths = dataset_paths(name, root, params.data.root)
    data = load_series_split(paths)
    h, o = data.history, data.horizon
    detail: dict[str, dict[str, Any]] = {}

    for m in methods:
        t, started_at = time.perf_counter(), time.time()
        if m == "persistence":
            res = score(data, lambda s, t0: persistence_forecast(s, t0, h, o))
            res["settings"] = {"rule": "repeat the last input step"}
        elif m == "ha":
            model = HistoricalAverage.fit(
                data.series, data.times, data.interval_minutes, data.train_range, cfg.ha_period
            )
            res = score(data, lambda s, t0, model=model: model.forecast(t0, h, o))
            res["settings"] = {
                "period": cfg.ha_period,
                "fitted_on": "train split",
                "empty_slots": model.empty_slots,
                "empty_slot_fallback": "train mean of the cell/channel",
            }
        elif m == "arima":
            fc = ArimaForecaster.fit(data.series, data.train_range, cfg.arima)
            res = score(data, lambda s, t0, fc=fc: fc.forecast(s, t0, h, o), chunk=len(data.windows["test"]))
            res["settings"] = {
                "order": list(cfg.arima.order),
                "max_fit_steps": cfg.arima.max_fit_steps,
                "method": cfg.arima.method,
                "series": fc.n_series,
                "constant_series": fc.constant_series,
                "failed_fits": fc.failed_fits,
                "ar_fallbacks": fc.ar_fallbacks,
                "forecast": "ARMA recursion with the fitted params fixed, from the window's last input",
            }
        else:  # stid
            res = _run_stid(params, cfg, name, root)
        res["seconds"] = time.perf_counter() - t
        res["started_at"], res["ended_at"] = started_at, time.time()  # wall clock of the fit (MLflow run times)
        detail[m] = res
        log.info("%s %s: MAE %.4f RMSE %.4f (%.1f s)", name, m, res["mae"], res["rmse"], res["seconds"])

    computed = dict(detail)
    summary = {
        m: {k: r[k] for k in ("mae", "rmse", "mae_std", "rmse_std", "seeds") if k in r} for m, r in detail.items()
    }
    paths.metrics_dir.mkdir(parents=True, exist_ok=True)
    if subset:  # a partial run (CLI --method) keeps the other baselines' earlier results
        old_s, old_d = paths.metrics_dir / "baselines.json", paths.metrics_dir / "baselines_detail.json"
        if old_s.is_file() and old_d.is_file():
            summary = {**read_json(old_s), **summary}
            detail = {**read_json(old_d).get("baselines", {}), **detail}
    write_json(paths.metrics_dir / "baselines_detail.json", {"dataset": name, "baselines": detail})
    write_json(paths.metrics_dir / "baselines.json", summary)
    write_scores(paths.metrics_dir / "baselines", summary)
    if log_mlflow:
        for m, r in computed.items():  # only what this invocation computed
            log_result(
                params,
                name,
                root,
                run_name=f"baseline-{m}",
                kind="baseline",
                started_at=r.get("started_at"),
                ended_at=r.get("ended_at"),
                run_params={"baseline": m, **_flat_settings(r.get("settings", {}))},
                metrics={"test_mae": r["mae"], "test_rmse": r["rmse"], "seconds": r["seconds"]},
                per_step=r.get("per_step"),
                history=r.get("history"),
            )
    return summary


def _run_stid(params: Params, cfg: BaselinesConfig, name: str, root: Path) -> dict[str, Any]:
    """Train and test STID once per seed (``baselines.stid.seeds``); several seeds -> mean and sample std."""
    import torch

    threads = torch.get_num_threads()
    if cfg.stid_torch_threads:
        torch.set_num_threads(int(cfg.stid_torch_threads))
    runs = []
    try:
        for seed in cfg.stid_seeds:
            sp = cfg.stid_params(params, seed)
            t = time.perf_counter()
            r = train_and_test(sp, name, root, name=f"{name}-stid-seed{seed}")
            r["seconds"] = time.perf_counter() - t
            runs.append((seed, r))
            log.info(
                "%s stid seed %d: MAE %.4f RMSE %.4f, best epoch %s (%.1f s)",
                name,
                seed,
                r["mae"],
                r["rmse"],
                r.get("best_epoch"),
                r["seconds"],
            )
    finally:
        torch.set_num_threads(threads)
    res = dict(runs[0][1])
    res["settings"] = {
        "overrides": cfg.stid_overrides,
        "seeds": cfg.stid_seeds,
        "torch_threads": cfg.stid_torch_threads,
    }
    res["time_identity"] = bool(sp.model.stid.time_identity)
    res["per_seed"] = [
        {
            "seed": seed,
            "mae": r["mae"],
            "rmse": r["rmse"],
            "best_epoch": r.get("best_epoch"),
            "val": r.get("val"),
            "epochs_run": len(r.get("history") or []),
            "seconds": r["seconds"],
        }
        for seed, r in runs
    ]
    if len(runs) > 1:
        for k in ("mae", "rmse"):
            vals = [r[k] for _, r in runs]
            res[k], res[f"{k}_std"] = statistics.fmean(vals), statistics.stdev(vals)
        res["seeds"] = len(runs)
        res["per_step"] = [
            {"step": ps[0]["step"], **{k: statistics.fmean(p[k] for p in ps) for k in ("mae", "rmse")}}
            for ps in zip(*(r["per_step"] for _, r in runs), strict=True)
        ]
    return res


def _flat_settings(s: dict[str, Any]) -> dict[str, Any]:
    return {f"settings.{k}": v for k, v in flatten(s).items()}


def write_scores(folder: Path, summary: dict[str, dict[str, Any]]) -> None:
    """One numbers-only JSON per baseline (``<folder>/<name>.json``; the DVC metrics): a method's numeric entries
    in ``summary`` (mae, rmse, and whatever spread a result carries), so ``dvc metrics show`` has a row per method."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for m, r in summary.items():
            nums = {k: v for k, v in flatten(r).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            write_json(tmp / f"{m}.json", nums)
