"""Ray Train V2 runs: a worker SIGKILLed mid-training -> the run resumes from its last checkpoint and finishes, and
MLflow holds every epoch's metrics exactly once. Slow (a local Ray cluster on 2 cores)."""

import os
import signal
import threading
import time

import pytest

from stvfm.io import read_json
from stvfm.training.run import PID_DIR_ENV
from stvfm.training.stage import run_train

from .conftest import tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_cluster(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray")
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    monkeypatch.setenv(PID_DIR_ENV, str(pid_dir))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        ray.shutdown()
    yield pid_dir
    ray.shutdown()


def _killer(pid_dir, kill_epoch: int, out: dict, timeout: float = 300.0) -> None:
    f = pid_dir / "1.pid"
    t = time.time()
    while time.time() - t < timeout:
        try:
            pid, epoch = (int(v) for v in f.read_text().split())
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        if epoch >= kill_epoch:
            os.kill(pid, signal.SIGKILL)
            out.update(pid=pid, epoch=epoch)
            return
        time.sleep(0.1)


def test_killed_worker_resumes_from_checkpoint_and_mlflow_has_each_epoch_once(tiny_project, ray_cluster):
    import mlflow

    epochs, kill_epoch = 6, 3
    p = tiny_params(
        tiny_project,
        **{
            "train.use_ray": True,
            "train.epochs": epochs,
            "train.num_workers": 2,
            "train.max_failures": 2,
            "train.max_batches_per_epoch": 3,
        },
    )
    killed: dict = {}
    th = threading.Thread(target=_killer, args=(ray_cluster, kill_epoch, killed), daemon=True)
    th.start()
    info = run_train(p, "synthetic", tiny_project)
    th.join(timeout=1)
    assert killed, "rank 1 never reached the kill epoch"
    print(f"killed rank 1 (pid {killed['pid']}) in epoch {killed['epoch']}; resumed at epoch {info['resumed_from']}")
    # rank 1 came back as a new process (the whole worker group restarts)
    new_pid = int((ray_cluster / "1.pid").read_text().split()[0])
    assert new_pid != killed["pid"]
    # resumed from a registered checkpoint (>= 1 epoch done), not from scratch and not past the killed epoch
    assert info["resumed_from"] is not None and 1 <= info["resumed_from"] <= killed["epoch"]
    assert info["epochs_run"] == epochs
    hist = read_json(tiny_project / "models" / "synthetic" / "history.json")
    assert [h["epoch"] for h in hist] == list(range(1, epochs + 1))
    client = mlflow.MlflowClient()
    for key in ("val_mae", "train_loss", "val_rmse"):
        steps = sorted(m.step for m in client.get_metric_history(info["run_id"], key))
        assert steps == list(range(1, epochs + 1)), key  # MLflow steps are the 1-based epoch numbers
    assert str(client.get_model_version_by_alias("stvfm-synthetic", "champion").version) == info["model"]["version"]
