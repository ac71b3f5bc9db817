"""Issue 11, items 7 and 9: two runs at once, leftovers of killed runs, and Ray addresses that lead nowhere."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness import REPO, assert_refused, changed


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


# ------------------------------------------------------------------ 7. concurrency and leftovers
def test_two_downloads_of_one_dataset_at_once(project, tmp_path):
    """The two runs are made to overlap: the first is frozen (SIGSTOP) inside its write, holding the lock, while the
    second starts and says it waits for it; then the first goes on. Both finish; one complete copy, no leftovers."""
    import signal

    f = project.outside / "big.npz"
    np.savez(f, flow=np.random.default_rng(0).poisson(3, (4000, 32, 32, 2)).astype("f4"), freq_minutes=np.int64(30))
    project.write_params(datasets=["big"], local_sources={"big": str(f)})
    cmd = [sys.executable, "-m", "pipelines.download", "big", "--params", str(project.params_file)]
    raw = project.root / "data/raw"
    logs = [tmp_path / "a.err", tmp_path / "b.err"]

    def start(log: Path) -> subprocess.Popen:
        with open(log, "w") as err:
            return subprocess.Popen(
                cmd,
                cwd=project.root,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                start_new_session=True,
            )

    a = start(logs[0])
    deadline = time.monotonic() + 120
    while not (raw.is_dir() and any(q.name.startswith(".big.") and q.name.endswith(".tmp") for q in raw.iterdir())):
        assert a.poll() is None and time.monotonic() < deadline, "the first download never began its write"
        time.sleep(0.001)
    os.killpg(a.pid, signal.SIGSTOP)  # the first run holds the lock, its write half done
    try:
        b = start(logs[1])
        while "another process is writing" not in logs[1].read_text():
            assert b.poll() is None, f"the second download did not wait for the first: {logs[1].read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the second download never said it waits"
            time.sleep(0.01)
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    for p, log in zip((a, b), logs, strict=True):
        assert p.wait(timeout=300) == 0 and "Traceback" not in log.read_text(), log.read_text()[-2000:]
    assert sorted(q.name for q in raw.iterdir()) == ["big"]  # no temp folders, no .old
    assert sorted(q.name for q in (raw / "big").iterdir()) == ["big.npz", "manifest.json"]
    assert (raw / "big/big.npz").read_bytes() == f.read_bytes()


def test_sources_lock_pins_of_two_processes_are_merged(tmp_path):
    from stvfm.datasets.lock import SourcesLock

    path = tmp_path / "data" / "sources.lock.json"
    a, b = SourcesLock.load(path), SourcesLock.load(path)  # both read the (empty) file before either writes
    a.pin("https://x/a", "a", "1" * 64, 1)
    b.pin("https://x/b", "b", "2" * 64, 2)
    a.save()
    b.save()
    assert set(SourcesLock.load(path).files) == {"https://x/a", "https://x/b"}
    c = SourcesLock.load(tmp_path / "data" / "sources.lock.json")
    c.files = {}
    c.pin("https://x/a", "a", "3" * 64, 1)  # the same URL pinned with another sha256 in between: refused
    from stvfm.errors import DataError

    with pytest.raises(DataError, match="another download pinned a"):
        c.save()


def test_stale_temp_folders_are_cleaned_at_the_next_start(project):
    project.data_ready()
    grid, raw, split = (project.root / "data" / d for d in ("grid", "raw", "split"))
    stale = [
        grid / ".synthetic.zarr.k1ll3d00.tmp",
        grid / ".synthetic.stats.parquet.abcdefgh.tmp",
        raw / ".synthetic.zz_zz_zz.tmp",
        split / ".synthetic.old",
        project.root / "data/flow/.synthetic.zarr.old",
    ]
    others = [grid / ".synthetic-x.zarr.k1ll3d00.tmp", grid / ".synthetic.zarr.toolong99.tmp.keep"]
    for d in stale + others:
        (d / "partial").mkdir(parents=True)
        (d / "partial" / "chunk").write_bytes(b"\0" * 5_000_000)  # a 5 MB partial store, as seen
    for st in ("download", "grid", "flow", "split"):
        assert project.stage(st, "synthetic").rc == 0
    assert [d for d in stale if d.exists()] == []
    assert all(d.exists() for d in others)  # another dataset's (or an unknown) entry is not ours to remove


# ------------------------------------------------------------------ 9. Ray addresses that lead nowhere
def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


@pytest.mark.parametrize("via", ["env", "params"])
def test_dead_ray_address_fails_fast_with_one_line(project, monkeypatch, via):
    addr = f"127.0.0.1:{_dead_port()}"
    sets = ("train.use_ray=true",)
    if via == "env":
        monkeypatch.setenv("RAY_ADDRESS", addr)
    else:
        sets += (f"train.ray_address={addr}",)
    before = project.hash()
    t = time.monotonic()
    r = project.stage("train", "synthetic", sets=sets)
    assert time.monotonic() - t < 30
    assert_refused(
        r, addr, "env RAY_ADDRESS" if via == "env" else "train.ray_address", "refuses connections", "private local Ray"
    )
    assert changed(before, project.hash()) == []  # no MLflow store, no model dir: refused before anything opened


def test_tune_with_a_dead_address_fails_fast(monkeypatch):
    from stvfm.errors import ConfigError
    from tune.run import init_ray
    from tune.settings import tune_settings

    addr = f"127.0.0.1:{_dead_port()}"
    t = time.monotonic()
    with pytest.raises(ConfigError, match=rf"{addr}.*from params train.ray_address"):
        init_ray(None, tune_settings({"space": {"model.lambda_flow": {"loguniform": [0.01, 10.0]}}}), addr)
    assert time.monotonic() - t < 10


def test_a_silent_cluster_ends_within_the_bound():
    """Something accepts TCP but never answers as a GCS: ray.init would retry forever; the watchdog ends the process
    with one line after timeout_s."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        conns = []
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])
        for c in conns:
            c.close()

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    code = (
        "from stvfm.cluster.ray_address import init_ray; "
        f"init_ray('127.0.0.1:{port}', timeout_s=4, logging_level='ERROR'); print('joined')"
    )
    t = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        th.join()
        srv.close()
    assert time.monotonic() - t < 60
    assert p.returncode == 2 and "joined" not in p.stdout
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "within 4 s" in lines[0], p.stderr[-2000:]


@pytest.mark.slow
def test_stale_address_file_is_ignored_without_a_configured_address(monkeypatch):
    """A `ray start` cluster that died uncleanly leaves <RAY_TMPDIR>/ray/ray_current_cluster behind; plain ray.init()
    would join it and retry forever. Without RAY_ADDRESS / train.ray_address the project starts its own Ray."""
    tmp = Path(tempfile.mkdtemp(prefix="i11r", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        (tmp / "ray").mkdir()
        stale = f"127.0.0.1:{_dead_port()}"
        (tmp / "ray" / "ray_current_cluster").write_text(stale)
        code = (
            "import ray; from stvfm.training.ray_train import ensure_ray; ensure_ray(num_cpus=1); "
            "print('gcs', ray.get_runtime_context().gcs_address); ray.shutdown()"
        )
        p = subprocess.run(
            [sys.executable, "-c", code], env=_env(RAY_TMPDIR=str(tmp)), capture_output=True, text=True, timeout=300
        )
        assert p.returncode == 0, p.stderr[-3000:]
        gcs = [line.split()[1] for line in p.stdout.splitlines() if line.startswith("gcs ")]
        assert gcs and gcs[0] != stale
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
