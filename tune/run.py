"""Ray Tune study over λ, cross-prompt layers, backbone (and lr): ``python -m tune.run --dataset synthetic``.

Locally it starts its own Ray (``tune.local_num_cpus`` logical CPUs, dashboard on 127.0.0.1); inside ``ray job submit``
or with ``RAY_ADDRESS``/``--address`` it joins that cluster. Outputs (under ``--root``, default env ``STVFM_ROOT`` or
the current directory):

    tune/results/<ds>/best.yaml     best trial: dotted params overrides (``stvfm tune apply`` writes them to
                                    params.yaml)
    tune/results/<ds>/summary.json  trials run / stopped early by ASHA / errored / retried, wall time, best metrics
    tune/results/<ds>/ray/          Tune + Train run dirs (checkpoints)
    MLflow: experiment ``<prefix>tune-<ds>``, a parent run per study with a nested child run per trial
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stvfm.cluster.ray_address import free_port
from stvfm.config import flatten, load_raw, params_from_dict, parse_overrides, set_dotted
from stvfm.datasets.registry import get_spec
from stvfm.errors import ConfigError, DataError, StvfmError
from stvfm.io import atomic_path, write_json
from stvfm.paths import dataset_paths
from tune.settings import TuneSettings, tune_settings
from tune.space import parse_space, plain_config, to_param_space
from tune.trainable import DEFAULT_TRAINER, load_factory, make_trainable

log = logging.getLogger("tune.run")
PIPELINE_STAGES = ("download", "grid", "flow", "split")


def results_dir(root: Path, dataset: str) -> Path:
    return Path(root) / "tune" / "results" / dataset


def trial_overrides(s: TuneSettings) -> dict[str, Any]:
    """Params every trial gets on top of params.yaml: study epochs/caps, per-trial resources, the profile's ``set``."""
    r = s.resources
    out = {
        "train.epochs": s.epochs,
        "train.max_batches_per_epoch": s.max_batches_per_epoch,
        "train.use_ray": True,
        "train.num_workers": r.num_workers,
        "train.cpus_per_worker": r.cpus_per_worker,
        "train.use_gpu": r.use_gpu,
        "train.gpus_per_worker": r.gpus_per_worker,
    }
    out.update(s.set)
    return out


def ensure_split(raw: Mapping[str, Any], dataset: str, root: Path, prepare: bool | None) -> None:
    """The study reads data/split/<ds> (+ grid/flow stores). Missing: build it for synthetic datasets (or --prepare)."""
    p = params_from_dict(raw)
    paths = dataset_paths(dataset, root, p.data.root)
    if paths.split_meta.exists():
        return
    spec = get_spec(dataset, p.local_sources)
    if prepare is False or (prepare is None and spec.kind != "synthetic"):
        raise DataError(
            f"split outputs missing ({paths.split_dir}); run `dvc repro split@{dataset}` first "
            f"(or pass --prepare), or point --root at the project that holds them",
            dataset=dataset,
        )
    log.info("preparing %s: %s", dataset, " -> ".join(PIPELINE_STAGES))
    # the stages write next to their params file, so the effective params (overrides applied) go into root briefly
    with tempfile.NamedTemporaryFile("w", dir=root, prefix=".tune-params-", suffix=".yaml", delete=False) as f:
        f.write(yaml.safe_dump(dict(raw), sort_keys=False))
    try:
        env = {**os.environ, "STVFM_PARAMS": f.name}
        for stage in PIPELINE_STAGES:
            r = subprocess.run(
                [sys.executable, "-m", f"pipelines.{stage}", dataset], cwd=root, env=env, capture_output=True, text=True
            )
            if r.returncode != 0:
                raise DataError(
                    f"preparing the split failed at `python -m pipelines.{stage} {dataset}`: "
                    f"{(r.stderr or r.stdout).strip()[-800:]}",
                    dataset=dataset,
                )
    finally:
        Path(f.name).unlink(missing_ok=True)


def init_ray(address: str | None, s: TuneSettings, params_address: str | None = None) -> bool:
    """Join a cluster (``--address``, ``train.ray_address`` or RAY_ADDRESS, set by ``ray job submit``) within a
    bounded time, or start a private local one (never a stale cluster named by Ray's address file). True if local."""
    from stvfm.cluster.ray_address import configured_address
    from stvfm.cluster.ray_address import init_ray as connect

    os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # no ANSI colour codes around relayed worker log prefixes
    if address or configured_address(params_address)[0]:
        return connect(address or params_address, logging_level=logging.WARNING)
    # Ray Train's PlacementGroupCleaner finds the dashboard through the state API; with another Ray instance on the
    # same host it dies with "Found multiple active Ray instances", leaks the trial's placement group and the next
    # trial waits forever. Pinning the API server address (inherited by every Ray process we start) avoids that.
    port = free_port()
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    env = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
    try:
        connect(
            None,
            num_cpus=s.local_num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=port,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": env},
        )
    except BaseException:
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        raise
    return True


def concurrency(s: TuneSettings, local: bool) -> int:
    """Trials that fit the cluster at once. Each needs a driver CPU plus its workers (the workers sit in their own
    placement group, which Tune does not count), so more concurrent drivers than that deadlocks (stack-facts §3)."""
    import ray

    res = ray.cluster_resources()
    r = s.resources
    fits = math.floor(res.get("CPU", 0) / r.cpus_per_trial + 1e-9)
    if r.use_gpu:
        fits = min(fits, math.floor(res.get("GPU", 0) / r.gpus_per_trial + 1e-9))
    want = s.max_concurrent_trials or max(fits, 1)
    if fits >= 1:
        if want > fits:
            log.warning(
                "tune.max_concurrent_trials=%d but the cluster fits %d trials (%.1f CPU, %.1f GPU each); using %d",
                want,
                fits,
                r.cpus_per_trial,
                r.gpus_per_trial,
                fits,
            )
        return min(want, fits)
    need = f"{r.cpus_per_trial} CPU" + (f" + {r.gpus_per_trial} GPU" if r.use_gpu else "")
    have = f"{res.get('CPU', 0)} CPU, {res.get('GPU', 0)} GPU"
    if local:
        raise ConfigError(
            f"one trial needs {need} (tune.resources) but the local Ray has {have}; raise "
            "tune.local_num_cpus or lower tune.resources"
        )
    log.warning("one trial needs %s but the cluster has %s now; waiting for the autoscaler", need, have)
    return want


def best_of(results, metric: str, mode: str) -> list[dict[str, Any]]:
    """One row per trial: its best epoch on ``metric`` (scope all), iterations, status."""
    rows = []
    for r in results:
        df = r.metrics_dataframe
        tid = (r.metrics or {}).get("trial_id")
        row: dict[str, Any] = {
            "trial": f"train_trial_{tid}" if tid else (r.path and Path(r.path).name),
            "config": plain_config(r.config or {}),
            "error": None if r.error is None else str(r.error).splitlines()[0][:300],
            "iterations": int((r.metrics or {}).get("training_iteration") or 0),
            "done": bool((r.metrics or {}).get("done")),
            "value": None,
        }
        if df is not None and metric in df and df[metric].notna().any():
            i = df[metric].idxmin() if mode == "min" else df[metric].idxmax()
            best = df.loc[i]
            row["value"] = float(best[metric])
            row["metrics"] = {
                k: float(best[k])
                for k in ("epoch", "train_loss", "val_loss", "val_mae", "val_rmse")
                if k in best and best[k] == best[k]
            }
            # Train-level restarts (worker lost, resumed from the last checkpoint) report resumed_from >= 0
            row["resumed"] = int("resumed_from" in df and (df["resumed_from"].fillna(-1) >= 0).any())
            ck = best.get("checkpoint_path") if "checkpoint_path" in df else None
            row["checkpoint_path"] = ck if isinstance(ck, str) else None
        rows.append(row)
    return rows


def write_best(path: Path, doc: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        hint = Path("tune", "results", path.parent.name, path.name).as_posix()
        tmp.write_text(
            f"# written by `python -m tune.run`; apply with `stvfm tune apply {hint}`\n"
            + yaml.safe_dump(dict(doc), sort_keys=False)
        )


def run_study(
    dataset: str,
    *,
    root: Path,
    params_path: Path | None = None,
    overrides: list[str] = (),
    profile: str | None = None,
    address: str | None = None,
    trainer: str = DEFAULT_TRAINER,
    prepare: bool | None = None,
) -> dict[str, Any]:
    """Run one study; returns the summary (also written to tune/results/<ds>/summary.json)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from tune.tracking import StudyTracker, resolve_tracking_uri

    t0 = time.time()
    root = Path(root).resolve()
    raw = load_raw(params_path if params_path is not None else root / "params.yaml")
    for k, v in parse_overrides(overrides):
        set_dotted(raw, k, v)
    params = params_from_dict(raw)  # validates the whole file
    get_spec(dataset, params.local_sources)  # unknown dataset -> ConfigError naming the known ones
    s = tune_settings(raw.get("tune") or {}, profile)
    extra = trial_overrides(s)
    base = copy.deepcopy(raw)
    parsed = parse_space(s.space, _with(base, extra))
    if getattr(load_factory(trainer), "needs_data", True):  # tune.smoke's stand-in trainer reads no data
        ensure_split(raw, dataset, root, prepare)

    from stvfm.cluster.ray_address import preflight

    preflight(address or params.train.ray_address)  # a dead cluster fails before the study's MLflow run opens
    out = results_dir(root, dataset)
    study = f"{dataset}-{s.profile or 'default'}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    tracker = StudyTracker(
        resolve_tracking_uri(params.tracking.tracking_uri, root),
        f"{params.tracking.experiment_prefix}tune-{dataset}",
        artifact_root=root,
    )
    space_params = {f"space.{k}": json.dumps(v) for k, v in s.space.items()}
    study_params = flatten({"tune": {k: v for k, v in s.__dict__.items() if k not in ("space", "profiles")}})
    tracker.start(study, {**study_params, **space_params, "dataset": dataset}, {"dataset": dataset, "study": study})

    failed, local = True, False
    try:
        local = init_ray(address, s, params.train.ray_address)
        max_conc = concurrency(s, local)
        log.info(
            "study %s: %d trials, %d at a time, %s per trial, space %s",
            study,
            s.num_samples,
            max_conc,
            s.resources,
            ", ".join(s.space),
        )
        trainable = tune.with_resources(
            make_trainable(base, extra, dataset, root, out / "ray" / "train", trainer), {"cpu": s.resources.trial_cpu}
        )
        tuner = tune.Tuner(
            trainable,
            param_space=to_param_space(parsed),
            tune_config=tune.TuneConfig(
                metric=s.metric,
                mode=s.mode,
                num_samples=s.num_samples,
                scheduler=ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=s.epochs,
                    grace_period=s.grace_period,
                    reduction_factor=s.reduction_factor,
                ),
                search_alg=BasicVariantGenerator(random_state=s.seed, max_concurrent=max_conc),
            ),
            run_config=tune.RunConfig(
                name=study,
                storage_path=str(out / "ray"),
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                callbacks=[tracker.callback(s.epochs)],
                verbose=1,
            ),
        )
        grid = tuner.fit()
        rows = best_of(grid, s.metric, s.mode)
        ok = [r for r in rows if r["value"] is not None and r["error"] is None]
        if not ok:
            raise StvfmError(
                f"tune study {study}: no trial finished ({len(rows)} run); first error: "
                f"{next((r['error'] for r in rows if r['error']), 'no metric reported')}"
            )
        best = (min if s.mode == "min" else max)(ok, key=lambda r: r["value"])
        summary = {
            "study": study,
            "dataset": dataset,
            "profile": s.profile,
            "metric": s.metric,
            "mode": s.mode,
            "trials": len(rows),
            "completed": sum(r["error"] is None and r["iterations"] >= s.epochs for r in rows),
            "stopped_early": sum(r["error"] is None and r["iterations"] < s.epochs for r in rows),
            "errored": sum(r["error"] is not None for r in rows),
            "retried": sum(1 for v in tracker.retries.values() if v),
            "resumed": sum(r.get("resumed", 0) for r in rows),
            "max_concurrent_trials": max_conc,
            "epochs": s.epochs,
            "best_value": best["value"],
            "best_config": best["config"],
            "best_trial": best["trial"],
            "wall_s": round(time.time() - t0, 1),
            "mlflow": {
                "tracking_uri": tracker.tracking_uri,
                "experiment": tracker.experiment,
                "parent_run_id": tracker.parent_run_id,
                "child_runs": len(tracker.children),
            },
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "per_trial": rows,
        }
        doc = {
            "dataset": dataset,
            "study": study,
            "profile": s.profile,
            "metric": s.metric,
            "mode": s.mode,
            "value": best["value"],
            "metrics": best.get("metrics", {}),
            "config": best["config"],
            "set": dict(s.set),
            "trial": best["trial"],
            "checkpoint_path": best.get("checkpoint_path"),
            "mlflow_parent_run_id": tracker.parent_run_id,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_best(out / "best.yaml", doc)
        write_json(out / "summary.json", summary)
        failed = False
        tracker.finish(
            {
                f"best_{s.metric}": best["value"],
                "trials": summary["trials"],
                "stopped_early": summary["stopped_early"],
                "errored": summary["errored"],
                "wall_s": summary["wall_s"],
            },
            {"best_trial": str(best["trial"]), **{f"best.{k}": str(v) for k, v in best["config"].items()}},
            [out / "best.yaml", out / "summary.json"],
            failed=False,
        )
        return summary
    finally:
        if failed:
            try:
                tracker.finish({}, {}, [], failed=True)
            except Exception:  # never mask the original error
                log.exception("could not close the MLflow parent run")
        ray.shutdown()
        if local:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)


def _with(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(dict(base))
    for k, v in extra.items():
        set_dotted(tree, k, v)
    return tree


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m tune.run", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="dataset name (see `stvfm datasets`), e.g. synthetic")
    p.add_argument("--profile", default=None, help="tune.profiles.<name> of params.yaml, e.g. paper (GPU clusters)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, e.g. --set tune.num_samples=8 (repeatable)",
    )
    p.add_argument(
        "--params", type=Path, default=None, help="params file (default: <root>/params.yaml or env STVFM_PARAMS)"
    )
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="project root holding data/ and receiving tune/results, mlflow.db (default: env STVFM_ROOT or "
        "the current directory; with `ray job submit --working-dir` pass the shared project path)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: env RAY_ADDRESS, else a local Ray)")
    p.add_argument(
        "--prepare",
        dest="prepare",
        action="store_true",
        default=None,
        help="build missing split outputs with the pipelines (default: only for synthetic datasets)",
    )
    p.add_argument("--no-prepare", dest="prepare", action="store_false")
    p.add_argument("--trainer", default=DEFAULT_TRAINER, help=argparse.SUPPRESS)  # module:function (tests, extensions)
    return p


def main_args(args: argparse.Namespace) -> int:
    root = args.root or Path(os.environ.get("STVFM_ROOT", "."))
    params_path = args.params or (Path(os.environ["STVFM_PARAMS"]) if os.environ.get("STVFM_PARAMS") else None)
    summary = run_study(
        args.dataset,
        root=root,
        params_path=params_path,
        overrides=args.overrides,
        profile=args.profile,
        address=args.address,
        trainer=args.trainer,
        prepare=args.prepare,
    )
    short = {k: v for k, v in summary.items() if k != "per_trial"}
    print(f"best {summary['metric']}={summary['best_value']:.4g} config={summary['best_config']}")
    print(json.dumps(short, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return main_args(args)
    except StvfmError as e:
        print(f"tune.run: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
