"""`ray job submit ... -- python -m tune.run` against a real two-node local Ray cluster, with a node killed mid-study.

The test starts a head (`ray start --head`, dashboard on 127.0.0.1, free ports, its own --temp-dir) and a second
node (`ray start --address`, its OWN --temp-dir: a shared one breaks --working-dir, stack-facts §4). It submits a
study from a copy of the project with `--working-dir .`, and SIGKILLs the second node's process group once a trial has
reported an epoch from it. It expects the study to finish anyway: every trial done (the hit one retried), best.yaml
written, and one finished MLflow child run per trial under the study's parent run. It stops only the processes it
started (by process group, then by the PIDs whose command line names its temp dirs).

Resources: head 5 + node 2 logical CPUs, and a trial = driver 1 CPU + 1 worker x 0.5 CPU. So 4 trials run at once,
and once node 2 is gone the head still fits 4 drivers + one worker group (no placement-group deadlock). The trials use
the stand-in trainer `tune.smoke` (1 s epochs, same contract as stvfm.training.ray_train.build_trainer), so the test
measures the plumbing (jobs, nodes, retries, ASHA, MLflow), not the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NUM_SAMPLES = 4
JOB = "stvfm-tune-test"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "STVFM_"))}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        # Ray Train's PlacementGroupCleaner needs the state API; other Ray instances on this host make the
        # address ambiguous, so pin it (tune/run.py does the same for the cluster it starts itself)
        RAY_API_SERVER_ADDRESS=api,
        RAY_TRAIN_ENABLE_PRINT_PATCH="0",
        RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0",
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="1",
        STVFM_SMOKE_EPOCH_S="1.0",
    )
    return env


def _copy_project(dst: Path) -> None:
    for name in ("stvfm", "tune", "pipelines"):
        shutil.copytree(PROJECT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / ".gitignore", dst / ".gitignore")
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    # 10 one-second epochs and no ASHA rung before the last epoch: a trial that has reported from node 2 is still
    # running when the test kills that node (with 4 epochs / grace 2 a quiet machine could finish or ASHA-stop it
    # first, and the fault would hit nothing). ASHA early stopping is seen in the default study (docs/tune.md).
    raw["tune"].update(
        num_samples=NUM_SAMPLES, max_concurrent_trials=4, epochs=10, grace_period=10, max_failures=2, seed=1
    )
    raw["tune"]["resources"].update(trial_cpu=1, num_workers=1, cpus_per_worker=0.5)
    (dst / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "ray"), "start", *args, "--block"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _alive_nodes(api: str, env: dict) -> list[dict]:
    r = subprocess.run(
        [str(BIN / "ray"), "list", "nodes", "--address", api, "--format", "json", "--filter", "state=ALIVE"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip().startswith("[") else []


def _kill_group(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, sig)


def _kill_by_marker(marker: str) -> None:
    """Ray's workers setsid() themselves; find the ones of OUR cluster by the temp dir in their command line."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="ignore")
        except OSError:
            continue
        if marker in cmd and int(d.name) != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(d.name), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_node_job_submit_survives_node_loss(tmp_path, monkeypatch):
    # Ray's job SDK prefers RAY_API_SERVER_ADDRESS over the address it is given: talk to this test's cluster only
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    proj = tmp_path / "proj"
    proj.mkdir()
    _copy_project(proj)
    tmp_node = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    markers = tmp_path / "markers"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    tmp_head = None
    try:
        t0 = time.time()
        for attempt in range(3):
            # A head that dies while starting (seen once on a busy box: its Ray client server timed out waiting for
            # node info and `ray start --block` exited) is retried on fresh ports with a fresh temp dir.
            tmp_head = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
            gcs, dash, agent1, agent2, client_port = _free_ports(5)
            api = f"http://127.0.0.1:{dash}"
            env = {**_env(api), "STVFM_SMOKE_MARKERS": str(markers)}
            head_log = logs / f"head{attempt}.log"
            head = _start(
                [
                    "--head",
                    "--port",
                    str(gcs),
                    "--dashboard-host",
                    "127.0.0.1",
                    "--dashboard-port",
                    str(dash),
                    "--dashboard-agent-listen-port",
                    str(agent1),
                    "--ray-client-server-port",
                    str(client_port),
                    "--num-cpus",
                    "5",
                    "--temp-dir",
                    str(tmp_head),
                ],
                env,
                head_log,
            )
            deadline = time.time() + 90
            while head.poll() is None and time.time() < deadline and not _alive_nodes(api, env):
                time.sleep(2)
            if head.poll() is None and _alive_nodes(api, env):
                procs.append(head)
                break
            _kill_group(head, signal.SIGKILL)
            _kill_by_marker(str(tmp_head))
            head.wait(timeout=30)
            shutil.rmtree(tmp_head, ignore_errors=True)
        else:
            pytest.fail("the Ray head did not start in 3 attempts:\n" + head_log.read_text()[-3000:])
        deadline = time.time() + 90
        node2 = _start(
            [
                "--address",
                f"127.0.0.1:{gcs}",
                "--dashboard-agent-listen-port",
                str(agent2),
                "--num-cpus",
                "2",
                "--temp-dir",
                str(tmp_node),
            ],
            env,
            logs / "node2.log",
        )
        procs.append(node2)
        while len(nodes := _alive_nodes(api, env)) < 2:
            assert node2.poll() is None and time.time() < deadline, (logs / "node2.log").read_text()[-3000:]
            time.sleep(2)
        node2_id = next(n["node_id"] for n in nodes if not n.get("is_head_node"))
        t_cluster = time.time() - t0

        t1 = time.time()
        sub = subprocess.run(
            [
                str(BIN / "ray"),
                "job",
                "submit",
                "--address",
                api,
                "--working-dir",
                ".",
                "--no-wait",
                "--submission-id",
                JOB,
                "--",
                "python",
                "-m",
                "tune.run",
                "--dataset",
                "synthetic",
                "--root",
                str(proj),
                "--trainer",
                "tune.smoke:build_trainer",
            ],
            cwd=proj,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sub.returncode == 0, sub.stdout + sub.stderr

        from ray.job_submission import JobStatus, JobSubmissionClient

        for _ in range(15):  # the dashboard can be briefly unreachable on a busy box right after a submission
            try:
                client = JobSubmissionClient(api)
                break
            except ConnectionError:
                assert head.poll() is None, "the Ray head died:\n" + head_log.read_text()[-3000:]
                time.sleep(2)
        else:
            pytest.fail("the Ray dashboard stopped answering after the submission:\n" + head_log.read_text()[-3000:])
        done = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}

        # fault: once a trial has reported an epoch from node 2, kill that node's whole process group
        killed_at = None
        deadline = time.time() + 300
        while killed_at is None and time.time() < deadline and client.get_job_status(JOB) not in done:
            if any(m.name.split(".")[1] == node2_id for m in markers.glob("*")):
                _kill_group(node2, signal.SIGKILL)
                _kill_by_marker(str(tmp_node))
                killed_at = time.time() - t1
            else:
                time.sleep(1)
        assert killed_at is not None, "no trial ever reported from node 2"

        deadline = time.time() + 420
        while (st := client.get_job_status(JOB)) not in done:
            assert time.time() < deadline, "job did not finish"
            time.sleep(3)
        t_job = time.time() - t1
        joblog = client.get_job_logs(JOB)
        (logs / "job.log").write_text(joblog)
        assert st == "SUCCEEDED", joblog[-4000:]
    finally:
        for p in reversed(procs):
            _kill_group(p, signal.SIGKILL)
        for d in (tmp_node, tmp_head):
            if d is not None:
                _kill_by_marker(str(d))
        for p in procs:
            p.wait(timeout=30)
        for d in (tmp_head, tmp_node):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)

    summary = json.loads((proj / "tune/results/synthetic/summary.json").read_text())
    print(
        json.dumps(
            {
                "cluster_up_s": round(t_cluster, 1),
                "job_s": round(t_job, 1),
                "killed_at_s": round(killed_at, 1),
                **{
                    k: summary[k]
                    for k in ("trials", "completed", "stopped_early", "errored", "retried", "wall_s", "best_value")
                },
            }
        )
    )
    assert summary["trials"] == NUM_SAMPLES and summary["errored"] == 0 and summary["max_concurrent_trials"] == 4
    assert summary["completed"] + summary["stopped_early"] == NUM_SAMPLES
    best = yaml.safe_load((proj / "tune/results/synthetic/best.yaml").read_text())
    assert set(best["config"]) == {
        "model.lambda_flow",
        "model.prompt_layers",
        "model.backbone",
        "model.vfm_blocks",
        "train.lr",
    }
    assert best["value"] == summary["best_value"] and best["metrics"]["val_rmse"] == best["value"]

    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    exp = c.get_experiment_by_name("stvfm-tune-synthetic")
    runs = c.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("kind") == "study"]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == best["mlflow_parent_run_id"]]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert len(kids) == NUM_SAMPLES and all(r.info.status == "FINISHED" for r in kids)
    assert all("val_rmse" in r.data.metrics for r in kids)
    # all four child runs were open at the same time (4 concurrent trials, one sqlite store, none lost)
    assert max(r.info.start_time for r in kids) < min(r.info.end_time for r in kids)
    for r in kids:
        hist = c.get_metric_history(r.info.run_id, "val_rmse")
        assert len(hist) >= int(r.data.tags["epochs_run"]) >= 1  # a retried trial logs its restart too
    assert min(r.data.metrics["val_rmse"] for r in kids) <= best["value"] + 1e-9
    # the killed node took a trial's driver (Tune retry) or its workers (Train restart from the checkpoint)
    hit = summary["retried"] + sum(1 for r in summary["per_trial"] if (r.get("resumed") or 0) > 0)
    assert hit >= 1, summary
