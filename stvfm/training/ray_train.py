"""Ray Train V2 data-parallel wrapper around the plain loop (Ray is imported here, in stvfm/cluster and in
stvfm/serving/batch.py only).

Every worker builds its own datasets from the split outputs, wraps the model with DDP (``prepare_model``) and the
loaders with distributed samplers (``prepare_data_loader``), and calls ``ray.train.report`` once per epoch; rank 0
attaches a checkpoint directory holding ``state.pt`` (full training state incl. the best weights so far). A restarted
worker group resumes from ``ray.train.get_checkpoint()``. :func:`export_checkpoint` turns a checkpoint into
``models/<ds>/best.pt``/``last.pt``/``history.json``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stvfm.cluster.ray_address import RAY_ENV_DEFAULTS, configured_address, free_port, init_ray, ray_env
from stvfm.config import Params, params_from_dict
from stvfm.errors import CheckpointError
from stvfm.training.checkpoint import load_checkpoint, save_checkpoint
from stvfm.training.run import export_state, worker_body

STATE_FILE = "state.pt"


def ensure_ray(num_cpus: int | None = None, address: str | None = None) -> float:
    """Start a private local Ray with the dashboard on, or join ``address`` (``train.ray_address``) / env RAY_ADDRESS
    within a bounded time (:mod:`stvfm.cluster.ray_address`); returns seconds spent."""
    ray_env()
    import ray

    t = time.perf_counter()
    if not ray.is_initialized():
        kw: dict[str, Any] = dict(logging_level="WARNING", include_dashboard=True, log_to_driver=True)
        local = configured_address(address)[0] in (None, "local")
        if num_cpus is not None and local:
            kw["num_cpus"] = num_cpus
        prev_api = os.environ.get("RAY_API_SERVER_ADDRESS")
        if local:
            # Ray Train's PlacementGroupCleaner finds the dashboard through the state API; with another Ray instance
            # on the host it prints a ~30-line "Found multiple active Ray instances" traceback (training succeeds).
            # Pinning our dashboard's address while the local cluster starts (its raylet, and so every worker, inherits
            # it) avoids that (as tune/run.py). The driver's own environment is restored afterwards: Ray's job SDK
            # prefers RAY_API_SERVER_ADDRESS over any address it is given, so a leftover pin would point later clients
            # of this process at this cluster's dashboard.
            port = free_port()
            kw.update(dashboard_host="127.0.0.1", dashboard_port=port)
            os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        try:
            for attempt in range(3 if local else 1):
                try:
                    init_ray(address, **dict(kw))
                    break
                except Exception as e:
                    # a local raylet must register within a fixed 30 s; on an overloaded box it sometimes does not
                    if local and "timed out during startup" in str(e) and attempt < 2:
                        logging.getLogger(__name__).warning(
                            "Ray start-up timed out (busy machine); retrying (%d/2)", attempt + 1
                        )
                        ray.shutdown()
                        continue
                    raise
        finally:
            if prev_api is None:
                os.environ.pop("RAY_API_SERVER_ADDRESS", None)
            else:
                os.environ["RAY_API_SERVER_ADDRESS"] = prev_api
    return time.perf_counter() - t


def _quiet_worker_logs() -> None:
    try:
        import ray.train.v2._internal.execution.context as c

        logging.getLogger(c.__file__).setLevel(logging.WARNING)
    except Exception:  # pragma: no cover - layout of a future Ray
        pass


def _all_reduce_sum(t):
    """Sum a small CPU tensor over all workers (on the GPU when the process group is NCCL)."""
    import torch
    import torch.distributed as dist

    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = t.to(dev, copy=True)
    dist.all_reduce(t)
    return t.cpu()


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train function: the plain loop with DDP, distributed loaders, per-epoch report + checkpoint."""
    import ray.train
    import ray.train.torch
    import torch
    from ray.train import CheckpointUploadMode

    _quiet_worker_logs()
    params: Params = params_from_dict(config["params"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if rank != 0:  # one line per fact: the model-building warnings (random-init backbone) come from rank 0 only
        logging.getLogger("stvfm.models").setLevel(logging.ERROR)
    cpus = params.train.cpus_per_worker
    if not params.train.use_gpu and cpus >= 1:
        torch.set_num_threads(int(cpus))
    resume_state = None
    ck = ray.train.get_checkpoint()
    if ck is not None:
        with ck.as_directory() as d:
            resume_state = load_checkpoint(Path(d) / STATE_FILE, require=("model_state", "optimizer", "loop"))
    resumed_from = resume_state["loop"]["next_epoch"] if resume_state else None

    def on_epoch(res, trainer) -> None:
        metrics = res.metrics()
        metrics["resumed_from"] = -1 if resumed_from is None else resumed_from
        metrics["best_val_mae"] = trainer.state.best_val
        if rank == 0:
            # upload in the background (Ray deletes the local dir afterwards): training goes on meanwhile
            tmp = tempfile.mkdtemp(prefix="stvfm-ck-")
            save_checkpoint(Path(tmp) / STATE_FILE, trainer.state_dict())
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
                checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
                delete_local_checkpoint_after_upload=True,
            )
        else:
            ray.train.report(metrics, checkpoint=None)

    device = ray.train.torch.get_device() if params.train.use_gpu else "cpu"
    worker_body(
        params,
        config["dataset"],
        config["root"],
        rank=rank,
        world=world,
        prepare_model=ray.train.torch.prepare_model,
        prepare_loader=ray.train.torch.prepare_data_loader,
        all_reduce=_all_reduce_sum if world > 1 else None,
        resume_state=resume_state,
        on_epoch=on_epoch,
        device=str(device),
    )


def default_run_name(dataset: str) -> str:
    return f"train-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def build_trainer(
    params: Params,
    dataset: str,
    root: str | Path,
    *,
    name: str | None = None,
    callbacks: Iterable[Any] = (),
    storage_path: str | Path | None = None,
):
    """A Train V2 ``TorchTrainer`` for ``dataset``; workers report epoch, train_loss, val_loss, val_mae, val_rmse
    (validation metrics on the original scale), lr, resumed_from. ``name`` should be unique per run: Train V2 resumes
    a run whose storage_path/name already holds checkpoints."""
    ray_env()
    import ray.train
    from ray.train.torch import TorchTrainer

    root = Path(root).resolve()
    t = params.train
    storage = Path(storage_path) if storage_path is not None else Path(t.storage_path)
    if not storage.is_absolute():
        storage = root / storage
    storage.mkdir(parents=True, exist_ok=True)
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = t.gpus_per_worker
    scaling = ray.train.ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources)
    run_cfg = ray.train.RunConfig(
        name=name or default_run_name(dataset),
        storage_path=str(storage),
        failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        callbacks=list(callbacks),
        logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        worker_runtime_env={
            "env_vars": {
                k: os.environ[k]
                for k in (*RAY_ENV_DEFAULTS, "STVFM_TRAIN_PID_DIR", "HF_HUB_OFFLINE")
                if k in os.environ
            }
        },
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"params": params.to_dict(), "dataset": dataset, "root": str(root)},
        scaling_config=scaling,
        run_config=run_cfg,
    )


def export_checkpoint(checkpoint: Any, model_dir: str | Path) -> dict[str, Any]:
    """``ray.train.Checkpoint`` or a checkpoint directory path (e.g. Tune's ``metrics['checkpoint_path']``) ->
    ``models/<ds>/best.pt``, ``last.pt``, ``history.json``. Returns the full training state."""

    if checkpoint is None:
        raise CheckpointError("the Ray run produced no checkpoint (did every epoch fail?)")
    if isinstance(checkpoint, (str, Path)):
        state = load_checkpoint(Path(checkpoint) / STATE_FILE, require=("model_state", "loop"))
    else:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / STATE_FILE, require=("model_state", "loop"))
    export_state(state, model_dir)
    return state


def fit(
    params: Params,
    dataset: str,
    root: str | Path,
    model_dir: str | Path,
    *,
    name: str | None = None,
    callbacks: Iterable[Any] = (),
) -> dict[str, Any]:
    """Start Ray if needed, fit, export the checkpoint; returns {state, result_metrics, ray_init_s, fit_s, name}."""
    init_s = ensure_ray(address=params.train.ray_address)
    name = name or default_run_name(dataset)
    trainer = build_trainer(params, dataset, root, name=name, callbacks=callbacks)
    t = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - t
    if result.error is not None:
        raise result.error
    state = export_checkpoint(result.checkpoint, model_dir)
    return {
        "state": state,
        "result_metrics": dict(result.metrics or {}),
        "ray_init_s": init_s,
        "fit_s": fit_s,
        "name": name,
        "checkpoint_path": str(result.checkpoint.path) if result.checkpoint else None,
    }
