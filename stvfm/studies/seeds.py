"""Seed study on real data: ST-VFM (the profile's model) and the STID baseline (its reference recipe,
``baselines.stid``), each trained with several seeds by the same in-process loop, selected on validation, test read
once per trained model; the report gives every run and the mean ± sample std, so a comparison of the two is not a
comparison of one lucky seed with another.

Jobs are named ``<model>@<seed>`` (``stvfm@1``, ``stid@0``); results go to ``metrics/<ds>/seeds/<job>.json`` (kept:
a job whose result exists is skipped unless named) and the table to ``reports/seeds-<ds>.md``. Several processes may
each take a share of the jobs; every one rewrites the report from all results present. Not part of ``dvc repro``.
"""

from __future__ import annotations

import logging
import re
import statistics
from pathlib import Path
from typing import Any

from stvfm.baselines.run import BaselinesConfig
from stvfm.config import Params, with_overrides
from stvfm.errors import ConfigError
from stvfm.io import atomic_path, read_json, write_json
from stvfm.paths import dataset_paths
from stvfm.studies.quality import fit_and_score, reference_scores, scores_line

log = logging.getLogger(__name__)

MODELS = ("stvfm", "stid")
SEEDS = (0, 1, 2)
_JOB = re.compile(r"^(stvfm|stid)@(\d{1,6})$")


def parse_job(job: str) -> tuple[str, int]:
    m = _JOB.match(job)
    if not m:
        raise ConfigError(
            f"seed job '{job}': expected <model>@<seed> with model one of {', '.join(MODELS)} "
            f"and an integer seed, e.g. stvfm@1"
        )
    return m.group(1), int(m.group(2))


def job_params(params: Params, model: str, seed: int) -> Params:
    """The params of one job: the profile as given (ST-VFM) or the STID baseline's overrides on top of it."""
    if model == "stid":
        return BaselinesConfig.from_params(params.baselines).stid_params(params, seed)
    return with_overrides(params, {"train.seed": seed})


def seeds_dir(root: Path, dataset: str, data_root: str = "data") -> Path:
    return dataset_paths(dataset, root, data_root).metrics_dir / "seeds"


def result_path(root: Path, dataset: str, job: str, data_root: str = "data") -> Path:
    return seeds_dir(root, dataset, data_root) / f"{job}.json"


def run_seeds(
    dataset: str, params: Params, root: str | Path = ".", jobs: list[str] | None = None, threads: int | None = 1
) -> dict[str, Any]:
    root = Path(root)
    named = bool(jobs)
    jobs = list(jobs) if jobs else [f"{m}@{s}" for m in MODELS for s in SEEDS]
    parsed = [(job, *parse_job(job)) for job in jobs]  # every name checked before any training
    ran = 0
    for job, model, seed in parsed:
        path = result_path(root, dataset, job, params.data.root)
        if path.is_file() and not named:
            continue
        r = fit_and_score(job_params(params, model, seed), dataset, root, test=True, threads=threads)
        r.update(job=job, model=model, seed=seed, profile=params.profile)
        write_json(path, r)
        ran += 1
        log.info("%s", scores_line("seeds", dataset, job, r))
    refs = {s: reference_scores(params, dataset, root, s) for s in ("val", "test")}
    folder = seeds_dir(root, dataset, params.data.root)
    rows = [read_json(q) for q in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    out = dataset_paths(dataset, root, params.data.root).report_dir / f"seeds-{dataset}.md"
    with atomic_path(out) as tmp:
        tmp.write_text(render_seeds(dataset, rows, refs))
    return {"report": str(out), "runs": ran, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: seeds, mean and sample std (0 for one seed) of val/test MAE and RMSE."""
    out: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        rs = sorted((r for r in rows if r.get("model") == model), key=lambda r: r["seed"])
        if not rs:
            continue
        d: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        for split in ("val", "test"):
            for k in ("mae", "rmse"):
                v = [r[split][k] for r in rs]
                d[f"{split}_{k}"] = statistics.fmean(v)
                d[f"{split}_{k}_std"] = statistics.stdev(v) if len(v) > 1 else 0.0
        out[model] = d
    return out


def render_seeds(dataset: str, rows: list[dict[str, Any]], refs: dict[str, dict[str, dict]]) -> str:
    def f(d):
        return f"{d['mae']:.3f} / {d['rmse']:.3f}"

    name = {"stvfm": "ST-VFM", "stid": "STID (baseline recipe)"}
    L = [
        f"# Seed study on real data: {dataset}",
        "",
        "Each run: the profile's ST-VFM or the STID baseline's reference recipe (`baselines.stid`), one seed, "
        "best-validation checkpoint, test read once. MAE / RMSE on the original scale.",
        "",
        "| model | seed | val MAE / RMSE | test MAE / RMSE | best epoch / run | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (MODELS.index(r["model"]), r["seed"])):
        L.append(
            f"| {name[r['model']]} | {r['seed']} | {f(r['val'])} | {f(r['test'])} | "
            f"{r['best_epoch']} / {r['epochs_run']} | {r['fit_s']:.0f} |"
        )
    s = summarise(rows)
    L += ["", "| model | seeds | val MAE / RMSE (mean ± std) | test MAE / RMSE (mean ± std) |", "|---|---|---|---|"]
    for model, d in s.items():
        L.append(
            f"| {name[model]} | {len(d['seeds'])} | {d['val_mae']:.3f} ± {d['val_mae_std']:.3f} / "
            f"{d['val_rmse']:.3f} ± {d['val_rmse_std']:.3f} | {d['test_mae']:.3f} ± {d['test_mae_std']:.3f} / "
            f"{d['test_rmse']:.3f} ± {d['test_rmse_std']:.3f} |"
        )
    for k in ("persistence", "ha"):
        L.append(f"| {k} (reference) | – | {f(refs['val'][k])} | {f(refs['test'][k])} |")
    if len(s) == 2:
        a, b = s["stvfm"], s["stid"]
        L += [
            "",
            f"ST-VFM ÷ STID, means: val MAE {a['val_mae'] / b['val_mae']:.3f}, RMSE "
            f"{a['val_rmse'] / b['val_rmse']:.3f}; test MAE {a['test_mae'] / b['test_mae']:.3f}, RMSE "
            f"{a['test_rmse'] / b['test_rmse']:.3f}.",
        ]
    L += ["", f"Profile: `{rows[0]['profile']}`." if rows else "", ""]
    return "\n".join(L)


__all__ = ["MODELS", "SEEDS", "job_params", "parse_job", "render_seeds", "run_seeds", "summarise"]
