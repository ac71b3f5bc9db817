"""Issue 13: `dvc metrics show` lists only numbers a user compares, one row per method and dataset, and fits in 120
columns for the default DAG; every plot is a PNG (renders offline)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import yaml


def _declared(project_root, kind):
    doc = yaml.safe_load((project_root / "dvc.yaml").read_text())
    out = []
    for name, st in doc["stages"].items():
        body = st.get("do", st)
        for entry in body.get(kind, []) or []:
            out.append((name, next(iter(entry)) if isinstance(entry, dict) else entry))
    return out


def test_only_numbers_files_are_metrics_and_plots_are_pngs(project_root):
    metrics = _declared(project_root, "metrics")
    assert sorted(metrics) == [("baselines", "metrics/${item}/baselines"), ("evaluate", "metrics/${item}/stvfm.json")]
    assert [p for _, p in _declared(project_root, "plots")] == ["metrics/${item}/plots"]  # a folder of PNGs


def test_metric_files_hold_numbers_only(tmp_path):
    from stvfm.baselines.run import write_scores

    write_scores(
        tmp_path / "baselines",
        {"stid": {"mae": 1.5, "rmse": 2.5, "mae_std": 0.1, "seeds": [0, 1, 2]}, "ha": {"mae": 1.7, "rmse": 2.9}},
    )
    stid = json.loads((tmp_path / "baselines" / "stid.json").read_text())
    assert stid == {"mae": 1.5, "rmse": 2.5, "mae_std": 0.1}


def test_dvc_metrics_show_fits_120_columns(tmp_path, project_root):
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(project_root / f, tmp_path / f)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    m = tmp_path / "metrics" / "synthetic"
    (m / "baselines").mkdir(parents=True)
    (m / "stvfm.json").write_text(json.dumps({"mae": 2.2141234, "rmse": 3.8481234}))
    for k, v in {"persistence": 3.116, "ha": 1.671, "arima": 2.314, "stid": 1.4988}.items():
        (m / "baselines" / f"{k}.json").write_text(
            json.dumps({"mae": v, "rmse": 2 * v, "mae_std": 0.01, "rmse_std": 0.02})
        )
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 6 and "metrics/synthetic/stvfm.json" in out and "baselines/stid.json" in out, out
    assert max(len(x) for x in lines) <= 120, out
