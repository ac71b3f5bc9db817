"""Issue 11: SIGKILL the grid, flow and split stages in the middle of their writes (7 kills each, bounded in time).
Every kill is shown to land *before the stage committed*: once the stage's new temp folder exists (its write has
begun) the test waits a random fraction of the write window (measured on a reference run), freezes the process
group (SIGSTOP), and checks, while it cannot move, that the process is alive, its temp folder is there and the output
is not the new one; only then SIGKILL. A try whose freeze came after the commit ("late") or after the stage exited
("finished") is counted apart, the old outputs are put back, and it does not count towards the 7. After every kill
the stage's output is the old one (grid: or a store without stats, an uncommitted run), never a mix; the next run
cleans up and completes with the same bytes as the reference run.

"New" is known beforehand: the same stage runs to completion in a copy of the project (outputs are deterministic,
which the final uninterrupted run checks)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import REPO

KILLS_PER_STAGE = 7  # mid-write kills that must land before the commit, x 3 stages = 21
MAX_TRIES_PER_STAGE = 4 * KILLS_PER_STAGE  # a try whose freeze comes after the commit is "late" and retried
DEADLINE_S = 480
OUT = {"grid": ("grid", "synthetic.stats.parquet"), "flow": ("flow", "synthetic.zarr"), "split": ("split", "synthetic")}


def _dir_hash(p: Path) -> str | None:
    if not p.exists():
        return None
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        h.update(q.relative_to(p).as_posix().encode() if p.is_dir() else b"")
        h.update(hashlib.sha256(q.read_bytes()).digest())
    return h.hexdigest()


def _state(root: Path, stage: str) -> tuple:
    d = root / "data"
    if stage == "grid":
        return _dir_hash(d / "grid/synthetic.zarr"), _dir_hash(d / "grid/synthetic.stats.parquet")
    return (_dir_hash(d / ("flow/synthetic.zarr" if stage == "flow" else "split/synthetic")),)


def _cmd(root: Path, stage: str) -> list[str]:
    return [sys.executable, "-m", f"pipelines.{stage}", "synthetic", "--params", str(root / "params.yaml")]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    return env


def _run(root: Path, stage: str) -> float:
    t = time.monotonic()
    p = subprocess.run(_cmd(root, stage), cwd=root, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return time.monotonic() - t


def _leftovers(root: Path) -> list[str]:
    return sorted(
        str(q.relative_to(root))
        for d in ("raw", "grid", "flow", "split")
        if (root / "data" / d).exists()
        for q in (root / "data" / d).iterdir()
        if q.name.startswith(".")
    )


def _temps(root: Path, stage: str) -> set[str]:
    """Temp folders (``.<name>.XXXXXXXX.tmp``, stvfm.io) in the stage's output folder."""
    out = root / "data" / OUT[stage][0]
    return (
        {e.name for e in os.scandir(out) if e.name.startswith(".") and e.name.endswith(".tmp")}
        if out.is_dir()
        else set()
    )


def _commit_mark(root: Path, stage: str) -> int | None:
    """Inode of the path whose swap commits the stage (grid: the stats, written last; else the output itself)."""
    try:
        return os.stat(root / "data" / OUT[stage][0] / OUT[stage][1]).st_ino
    except FileNotFoundError:
        return None


def _write_window(root: Path, stage: str) -> tuple[float, float]:
    """Run ``stage`` to completion on ``root``, watching it: (seconds from start to its temp folder, seconds from
    there to the commit)."""
    before, mark = _temps(root, stage), _commit_mark(root, stage)
    t = time.monotonic()
    p = subprocess.Popen(
        _cmd(root, stage), cwd=root, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    t_tmp = t_commit = None
    while p.poll() is None:
        now = time.monotonic() - t
        if t_tmp is None and _temps(root, stage) - before:
            t_tmp = now
        m = _commit_mark(root, stage)
        if t_tmp is not None and t_commit is None and m is not None and m != mark:
            t_commit = now
        time.sleep(0.0005)
    assert p.returncode == 0, p.stderr.read()[-2000:]
    assert t_tmp is not None and t_commit is not None, (stage, t_tmp, t_commit)
    return t_tmp, t_commit - t_tmp


def _outputs(root: Path, stage: str) -> list[Path]:
    d = root / "data"
    return {
        "grid": [d / "grid/synthetic.zarr", d / "grid/synthetic.stats.parquet"],
        "flow": [d / "flow/synthetic.zarr"],
        "split": [d / "split/synthetic"],
    }[stage]


def _put_back(backup: Path, root: Path, stage: str) -> None:
    """Restore the stage's old outputs (after a late kill let the new ones in), so every kill starts from old."""
    for p in _outputs(root, stage):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
        src = backup / p.relative_to(root)
        shutil.copytree(src, p) if src.is_dir() else shutil.copy2(src, p)


def _process_state(pid: int) -> str | None:
    """One-letter state of ``pid`` from /proc (``T`` = stopped), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="watches the stage's process state in /proc (Linux)")
def test_sigkill_mid_write_leaves_old_and_the_rerun_completes(project, tmp_path, request):
    started: list[subprocess.Popen] = []

    def _reap() -> None:  # a failed check between the freeze and the kill must not leave a stopped stage behind
        for proc in started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    request.addfinalizer(_reap)
    project.data_ready()  # old outputs: span 7 days
    project.write_params(data={"synthetic": {"span_days": 9}})  # new raw data -> new grid -> new flow -> new split
    assert project.stage("download", "synthetic").rc == 0
    rng = random.Random(11)
    t_end = time.monotonic() + DEADLINE_S
    seen: dict[str, dict[str, object]] = {}
    for stage in ("grid", "flow", "split"):
        old = _state(project.root, stage)
        ref = tmp_path / f"ref-{stage}"
        shutil.copytree(project.root, ref, symlinks=True)
        _, window = _write_window(ref, stage)
        new = _state(ref, stage)
        assert new != old
        # before the commit: the old output, or (grid) a store without stats — the old one, or the new one swapped
        # in while its stats (the commit mark) are not yet written
        before_commit = {old, (old[0], None), (new[0], None)} if stage == "grid" else {old}
        backup = tmp_path / f"old-{stage}"
        for p in _outputs(project.root, stage):
            dst = backup / p.relative_to(project.root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(p, dst) if p.is_dir() else shutil.copy2(p, dst)
        counts = {"mid-write": 0, "late": 0, "finished": 0, "with temp leftovers": 0}
        fractions: list = []
        while counts["mid-write"] < KILLS_PER_STAGE:
            tries = counts["mid-write"] + counts["late"] + counts["finished"]
            assert tries < MAX_TRIES_PER_STAGE, (
                f"{stage}: only {counts['mid-write']} of {tries} kills landed "
                f"before the commit: {counts}, write window {1000 * window:.1f} ms, kill points {fractions}"
            )
            assert time.monotonic() < t_end, f"fault-injection loop exceeded {DEADLINE_S} s"
            temps_before = _temps(project.root, stage)  # a killed run's leftovers: not the new run's write
            mark = _commit_mark(project.root, stage)
            p = subprocess.Popen(
                _cmd(project.root, stage),
                cwd=project.root,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            started.append(p)
            while not (_temps(project.root, stage) - temps_before):  # the stage's write has begun
                assert p.poll() is None, f"{stage} exited (rc {p.returncode}) before its temp folder was seen"
                time.sleep(0.0005)
            t_write = time.monotonic()
            time.sleep(rng.uniform(0.0, 1.0) * window)  # a random point of the write window
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGSTOP)  # freeze the stage where it is, then look
            frozen_by = time.monotonic() + 5
            while (ps := _process_state(p.pid)) not in ("T", "t", "Z", None):  # stopped, or exited before
                assert time.monotonic() < frozen_by, f"{stage} did not stop within 5 s (state {ps})"
                time.sleep(0.0005)
            fraction = (time.monotonic() - t_write) / window
            if ps in ("Z", None):  # it finished before the freeze: no kill landed
                assert p.wait() == 0 and _state(project.root, stage) == new
                counts["finished"] += 1
                fractions.append(f"finished@{fraction:.2f}")
                _put_back(backup, project.root, stage)
                continue
            st, mark_frozen = _state(project.root, stage), _commit_mark(project.root, stage)
            writing = bool(_temps(project.root, stage) - temps_before)  # its temp folder is still there
            assert p.poll() is None  # alive (stopped), so the SIGKILL below lands on a running stage
            os.killpg(p.pid, signal.SIGKILL)
            assert p.wait() == -signal.SIGKILL  # our kill ended it, not a normal exit
            after = _state(project.root, stage)
            assert after == st, f"{stage}: output changed between the freeze and the kill"
            assert after in before_commit | {new}, f"{stage}: a mix of old and new outputs after SIGKILL: {after}"
            if after == new:  # the freeze came after the commit: valid, but not a kill before the commit
                assert mark_frozen not in (mark, None)  # the commit mark was swapped in
                counts["late"] += 1
                fractions.append(f"late@{fraction:.2f}")
                _put_back(backup, project.root, stage)
                assert _state(project.root, stage) == old
            else:  # before the commit: inside its write, the commit mark is the old one (grid: or already removed)
                assert writing and (mark_frozen == mark or (stage == "grid" and mark_frozen is None)), (
                    stage,
                    writing,
                    mark,
                    mark_frozen,
                )
                counts["mid-write"] += 1
                fractions.append(round(fraction, 2))
            counts["with temp leftovers"] += bool(_leftovers(project.root))
        seen[stage] = {**counts, "write_window_ms": round(1000 * window, 1), "kill_at_fraction": fractions}
        _run(project.root, stage)  # the next run cleans up and completes
        assert _state(project.root, stage) == new  # deterministic: the same bytes as the reference run
        assert _leftovers(project.root) == [], _leftovers(project.root)
    print("fault injection:", seen)
    assert [seen[s]["mid-write"] for s in ("grid", "flow", "split")] == [KILLS_PER_STAGE] * 3
    assert sum(seen[s]["mid-write"] for s in seen) == 21
    assert all(seen[s]["with temp leftovers"] >= 1 for s in seen)  # kills did interrupt writes (and were cleaned)
