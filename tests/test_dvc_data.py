"""`dvc repro` of the data stages (download -> grid -> flow -> split) on a tiny synthetic config, in a temporary copy of
the repository; a second `dvc repro` must be a no-op."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _copy_repo(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for d in ("stvfm", "pipelines"):
        shutil.copytree(ROOT / d, dst / d, ignore=ignore)
    for f in ("params.yaml", "dvc.yaml", "pyproject.toml", ".dvcignore"):
        if (ROOT / f).exists():
            shutil.copy2(ROOT / f, dst / f)
    (dst / ".dvc").mkdir()
    for f in ("config", ".gitignore"):
        if (ROOT / ".dvc" / f).exists():
            shutil.copy2(ROOT / ".dvc" / f, dst / ".dvc" / f)


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def _setup(tmp_path: Path, datasets: list[str], local_sources: dict | None = None):
    dvc = BIN / "dvc"
    if not dvc.exists():
        pytest.skip("dvc is not installed in this environment")
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["datasets"] = datasets
    params["data"]["synthetic"]["span_days"] = 4  # 96 hourly steps: train 67, val 14, test 15
    if local_sources is not None:
        params["local_sources"] = local_sources
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(repo),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    _run(["git", "init", "-q"], repo, env)
    return dvc, repo, params, env


@pytest.mark.slow
def test_dvc_repro_data_stages(tmp_path):
    dvc, repo, params, env = _setup(tmp_path, ["synthetic"])
    t = time.perf_counter()
    r = _run([str(dvc), "repro", "split@synthetic"], repo, env)
    cold = time.perf_counter() - t
    for stage in ("download@synthetic", "grid@synthetic", "flow@synthetic", "split@synthetic"):
        assert f"Running stage '{stage}'" in r.stdout, r.stdout

    meta = json.loads((repo / "data/split/synthetic/meta.json").read_text())
    assert meta["T"] == 96 and meta["bounds"] == {"train": [0, 67], "val": [67, 81], "test": [81, 96]}
    assert meta["n_windows"] == {"train": 56, "val": 3, "test": 4}
    assert meta["grid"] == [16, 8] and meta["channels"] == 2 and meta["interval_minutes"] == 60
    for p in (
        "data/grid/synthetic.zarr",
        "data/grid/synthetic.stats.parquet",
        "data/flow/synthetic.zarr",
        "data/split/synthetic/windows.parquet",
        "data/split/synthetic/scaler.json",
    ):
        assert (repo / p).exists(), p
    assert (repo / "dvc.lock").exists()

    t = time.perf_counter()
    r = _run([str(dvc), "repro", "split@synthetic"], repo, env)
    noop = time.perf_counter() - t
    assert "Running stage" not in r.stdout, r.stdout
    assert "up to date" in r.stdout.lower() or "didn't change" in r.stdout
    print(f"\ndvc repro data stages (synthetic, 4 days): cold {cold:.1f} s, no-op {noop:.1f} s")

    # a param that only the split reads reruns only the split
    params["data"]["scaler"] = "minmax"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _run([str(dvc), "repro", "split@synthetic"], repo, env)
    assert "Running stage 'split@synthetic'" in r.stdout
    assert all(f"Running stage '{s}@synthetic'" not in r.stdout for s in ("download", "grid", "flow")), r.stdout
    assert json.loads((repo / "data/split/synthetic/scaler.json").read_text())["kind"] == "minmax"


@pytest.mark.slow
@pytest.mark.real
def test_dvc_repro_real_sample(tmp_path, real_data_dir):
    """The real BikeNYC-1 tail runs through the same DAG as a local_sources entry."""
    src = real_data_dir / "bikenyc1_tail.npz"
    dvc, repo, _, env = _setup(tmp_path, ["bikenyc1_tail"], {"bikenyc1_tail": {"path": str(src), "like": "bikenyc1"}})
    r = _run([str(dvc), "repro", "split@bikenyc1_tail"], repo, env)
    assert "Running stage 'grid@bikenyc1_tail'" in r.stdout
    meta = json.loads((repo / "data/split/bikenyc1_tail/meta.json").read_text())
    assert meta["T"] == 1369 and meta["n_windows"] == {"train": 947, "val": 194, "test": 195}
    assert meta["start"] == "2014-08-04T23:00:00" and meta["interval_minutes"] == 60


@pytest.mark.slow
def test_dvc_repro_report_of_trip_records(tmp_path):
    """`dvc repro report@bikenyc1-trips` with a Citi Bike archive in the mirror: download (mirror) -> grid (the trip
    reader) -> flow -> split -> train -> evaluate -> baselines -> report, and a report that names the data for what
    it is (trip records gridded here, no gap to the paper). A second `dvc repro` is a no-op."""
    from stvfm.datasets.registry import get_spec

    from trip_fixtures import citibike_year

    ds = "bikenyc1-trips"
    mirror = tmp_path / "mirror"
    archive = citibike_year(mirror, ds, trips_per_hour=20.0)
    dvc, repo, params, env = _setup(tmp_path, [ds])
    params["data"]["mirror_dir"] = str(mirror)
    params["profile"] = "smoke"  # an explicit profile: one short epoch (auto would pick `real` for trip records)
    params["sweeps"]["datasets"] = []
    params["baselines"]["methods"] = ["persistence", "ha", "stid"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    t = time.perf_counter()
    r = _run([str(dvc), "repro", f"report@{ds}"], repo, env)
    cold = time.perf_counter() - t
    for stage in ("download", "grid", "flow", "split", "train", "evaluate", "baselines", "report"):
        assert f"Running stage '{stage}@{ds}'" in r.stdout, r.stdout
    spec = get_spec(ds)
    manifest = json.loads((repo / f"data/raw/{ds}/manifest.json").read_text())
    assert manifest["kind"] == "trips-citibike" and manifest["files"][0]["name"] == archive.name
    meta = json.loads((repo / f"data/split/{ds}/meta.json").read_text())
    assert meta["grid"] == list(spec.grid) and meta["channels"] == 2
    assert meta["interval_minutes"] == spec.interval_minutes and meta["start"] == f"{spec.span[0]}T00:00:00"
    train = json.loads((repo / f"models/{ds}/train.json").read_text())
    assert train["profile"] == "smoke" and train["profile_reason"] == "chosen: profile: smoke"
    md = (repo / f"reports/{ds}.md").read_text()
    assert "NO GAP IS COMPUTED" in md and "raw trip records gridded by this project" in md
    assert "| ST-VFM (full) |" in md and "gap MAE" not in md
    assert "## The paper's Table 2 for BikeNYC-1 — for reference only" in md
    r = _run([str(dvc), "repro", f"report@{ds}"], repo, env)
    assert "Running stage" not in r.stdout, r.stdout
    print(f"\ndvc repro report@{ds} (fixture archive {archive.stat().st_size >> 10} KiB): cold {cold:.1f} s")
