"""Report stage entry points: build the markdown + figures and log them to MLflow as artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvfm import tracking
from stvfm.config import Params
from stvfm.errors import ConfigError
from stvfm.report.markdown import build_report, build_summary
from stvfm.tracking import log_result

REPORT_KEYS = {"forecast_maps"}


def report_options(params: Params) -> dict[str, Any]:
    r = dict(params.report or {})
    if set(r) - REPORT_KEYS:
        raise ConfigError(
            f"params.yaml report: unknown key(s) {', '.join(sorted(set(r) - REPORT_KEYS))}; "
            f"allowed: {', '.join(sorted(REPORT_KEYS))}"
        )
    return {"forecast_maps": bool(r.get("forecast_maps", True))}


def run_report(dataset: str, params: Params, root: str | Path = ".", log_mlflow: bool = True) -> dict[str, Any]:
    d = build_report(dataset, params, root, maps=report_options(params)["forecast_maps"])
    if log_mlflow:
        report = Path(d["report"])
        log_result(
            params,
            dataset,
            root,
            run_name="report",
            kind="report",
            run_params={
                "paper_dataset": d.get("paper_dataset"),
                "relation": d["level"],
                "comparable": d.get("comparable"),
                "pretrained_backbone": d.get("pretrained"),
                "data_start": d["span"]["start"],
                "data_end": d["span"]["end"],
            },
            metrics={f"{r['key']}_mae": r["mae"] for r in d["rows"]}
            | {f"{r['key']}_rmse": r["rmse"] for r in d["rows"]},
            artifacts=[report, report.parent / "figures" / dataset],
        )
        tracking.write_experiment_summary(params, dataset, root)  # the experiment page's comparison table
    return d


def run_summary(
    params: Params, root: str | Path = ".", datasets: list[str] | None = None, log_mlflow: bool = True
) -> Path:
    datasets = list(datasets or params.datasets)
    out = build_summary(datasets, params, root)
    if log_mlflow:
        log_result(
            params,
            "summary",
            root,
            run_name="summary",
            kind="report-summary",
            run_params={"datasets": datasets},
            artifacts=[out],
        )
    return out
