"""Variant and backbone sweeps (Table 3 and appendix Table 3 of the paper) as DVC matrix stages.

``run_sweep(dataset, kind, value, params, root)`` trains one configuration with the sweep profile of ``params.sweeps``
(``kind`` = ``variant`` sets ``model.variant``; ``backbone`` sets ``model.backbone``), scores it on the test windows and
writes ``metrics/<ds>/sweeps/<kind>-<value>.json``; one MLflow run per result.

Profiles (``sweeps:`` in params.yaml): ``profile`` overrides apply to every sweep run, ``backbone_profile`` on top of
them for the backbone runs. The default is a cheap CPU profile (in-process loop, 1 epoch, capped batches, a few VFM
blocks, random-init backbones allowed); ``docs/report.md`` gives the paper profile.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from stvfm.baselines.fit import train_and_test
from stvfm.config import Params, SweepConfig, with_overrides
from stvfm.io import write_json
from stvfm.paths import dataset_paths
from stvfm.tracking import log_result

log = logging.getLogger(__name__)


def run_sweep(
    dataset: str, kind: str, value: str, params: Params, root: str | Path = ".", log_mlflow: bool = True
) -> dict[str, Any]:
    root = Path(root)
    cfg = SweepConfig.from_params(params.sweeps)
    overrides = cfg.overrides(kind, value)
    sp = with_overrides(params, overrides)
    t, started_at = time.perf_counter(), time.time()
    threads = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    try:
        res = train_and_test(sp, dataset, root, name=f"{dataset}-{kind}-{value}", val_windows=cfg.val_windows)
    finally:
        torch.set_num_threads(threads)
    res.update(
        dataset=dataset,
        kind=kind,
        value=value,
        overrides=overrides,
        seconds=time.perf_counter() - t,
        pretrained_backbone=bool(res.get("backbone", {}).get("pretrained", False)),
        model={k: getattr(sp.model, k) for k in ("variant", "backbone", "vfm_blocks", "weights")},
        train={k: getattr(sp.train, k) for k in ("epochs", "max_batches_per_epoch", "batch_size", "lr")},
    )
    ended_at = time.time()
    res["profile"] = params.profile
    out = dataset_paths(dataset, root, params.data.root).sweep_result(kind, value)
    write_json(out, res)
    log.info(
        "%s %s=%s: MAE %.4f RMSE %.4f (%.1f s, pretrained=%s)",
        dataset,
        kind,
        value,
        res["mae"],
        res["rmse"],
        res["seconds"],
        res["pretrained_backbone"],
    )
    if log_mlflow:
        log_result(
            sp,
            dataset,
            root,
            run_name=f"sweep-{kind}-{value}",
            kind=f"sweep-{kind}",
            started_at=started_at,
            ended_at=ended_at,
            run_params={
                "sweep.kind": kind,
                "sweep.value": value,
                **{f"override.{k}": v for k, v in overrides.items()},
                "pretrained_backbone": res["pretrained_backbone"],
            },
            metrics={"test_mae": res["mae"], "test_rmse": res["rmse"], "seconds": res["seconds"]},
            per_step=res.get("per_step"),
            history=res.get("history"),
            artifacts=[out],
        )
    return res
