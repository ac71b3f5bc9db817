"""A stand-in trainer with the contract of ``stvfm.training.ray_train.build_trainer`` for checking cluster plumbing
(Ray job submission, two nodes, Tune retries, MLflow parent/child runs) in seconds, without the model or data:

    python -m tune.run --dataset synthetic --trainer tune.smoke:build_trainer --no-prepare

Its ``TorchTrainer`` runs ``params.train.num_workers`` workers that each "train" for ``train.epochs`` epochs (a short
sleep, env ``STVFM_SMOKE_EPOCH_S``, default 0.5 s) and report {epoch, train_loss, val_loss, val_mae, val_rmse} with a
checkpoint from rank 0, where the loss is a smooth function of λ, prompt layers, vfm_blocks and lr, so the best config
is known: λ = 0.3, prompt_layers = 2, the most vfm_blocks, lr = 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def smoke_loss(cfg: dict[str, Any], epoch: int) -> float:
    lam = float(cfg.get("lambda_flow") or 0.5)
    lr = float(cfg.get("lr") or 1e-3)
    pl = cfg.get("prompt_layers")
    pl = 1 if pl is None else int(pl)
    blocks = cfg.get("vfm_blocks") or 12
    base = (math.log10(lam / 0.3)) ** 2 + 0.2 * (pl - 2) ** 2 + (math.log10(lr / 1e-3)) ** 2 + 0.5 / blocks
    return 0.5 + base + 1.0 / (epoch + 1)


def _train_fn(cfg: dict[str, Any]) -> None:
    import logging
    import os
    import tempfile
    import time

    import ray.train
    import ray.train.v2._internal.execution.context as _c

    logging.getLogger(_c.__file__).setLevel(logging.WARNING)  # "Reporting training result" lines (stack-facts §1)
    ctx = ray.train.get_context()
    start = 0
    ck = ray.train.get_checkpoint()
    if ck is not None:
        with ck.as_directory() as d:
            start = int(Path(d, "epoch").read_text()) + 1
    for epoch in range(start, cfg["epochs"]):
        time.sleep(float(os.environ.get("STVFM_SMOKE_EPOCH_S", "0.5")))
        loss = smoke_loss(cfg, epoch)
        metrics = {
            "epoch": epoch,
            "train_loss": loss * 1.1,
            "val_loss": loss,
            "val_mae": loss * 0.8,
            "val_rmse": loss,
            "resumed_from": start if ck is not None else -1,
        }
        if ctx.get_world_rank() == 0:
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "epoch").write_text(str(epoch))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        marks = os.environ.get("STVFM_SMOKE_MARKERS")  # tests: "this run has reported from node X" (fault tests)
        if marks:
            node = ray.get_runtime_context().get_node_id()
            Path(marks).mkdir(parents=True, exist_ok=True)
            Path(marks, f"{ctx.get_experiment_name()}.{node}.{ctx.get_world_rank()}").touch()


def build_trainer(
    params, dataset: str, root: str | Path, *, name: str, callbacks: Sequence[Any] = (), storage_path: str | None = None
):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t, m = params.train, params.model
    cfg = {
        "epochs": t.epochs,
        "lambda_flow": m.lambda_flow,
        "lr": t.lr,
        "prompt_layers": m.prompt_layers,
        "vfm_blocks": m.vfm_blocks,
        "backbone": m.backbone,
    }
    res = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if t.use_gpu else {})}
    return TorchTrainer(
        _train_fn,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=res),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage_path or Path(root) / t.storage_path),
            callbacks=list(callbacks),
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )


build_trainer.needs_data = False  # type: ignore[attr-defined]
