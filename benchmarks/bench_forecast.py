"""Batch forecasts: windows/s of Ray Data (map_batches, 2 actors with one model each, 1 torch thread each) vs a plain
loop in one process (the same scorer; the faster of --threads and 1 torch thread) on the same windows and batches. The result arrays must be
identical. Throughput is measured from "model loaded" to "last batch scored" on both sides (Ray start-up and actor
start-up are reported separately, as is the end-to-end time). Goal: ratio (ray / plain) >= 0.9 on 2 cores.

    python benchmarks/bench_forecast.py [--span-days 12] [--split train] [--batch-size 16] [--actors 2] [--threads 2]

Builds a small synthetic project in a temp dir with the real stages and a random-init model of the default size
(params.yaml model section; throughput does not depend on the weights). Last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_project(root: Path, span_days: int) -> None:
    import yaml

    from stvfm.config import load_raw, params_from_dict
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download

    raw = load_raw(ROOT / "params.yaml")
    raw["datasets"] = ["synthetic"]
    raw["data"]["synthetic"]["span_days"] = span_days
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = params_from_dict(raw)
    for f in (run_download, run_grid, run_flow, run_split):
        f("synthetic", p, root)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span-days", type=int, default=12)
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the plain loop (default: 2 = actors)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import numpy as np
    import torch

    logging.basicConfig(level=logging.WARNING)
    from stvfm.config import load_params
    from stvfm.serving.batch import WindowScorer, _batches, ensure_ray, model_source, score_ray, split_windows
    from stvfm.serving.version import write_version
    from stvfm.paths import dataset_paths
    from stvfm.training.components import build_components
    from stvfm.training.stage import version_from_best

    with tempfile.TemporaryDirectory(prefix="bench-forecast-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_project(root, args.span_days)
        data_s = time.perf_counter() - t
        params = load_params(root / "params.yaml")
        torch.manual_seed(0)
        comp = build_components(params, "synthetic", root, splits=("test",))
        best = {**comp.meta, "model_state": comp.model.state_dict(), "epoch": 0, "val": {}}
        write_version(root / "version", *version_from_best(best, dataset_paths("synthetic", root)))
        src = model_source(params, "synthetic", root, str(root / "version"))
        win = split_windows(dataset_paths("synthetic", root), args.split, int(src.config["history"]))
        n = len(win.starts)
        base = dict(config=src.config, weights=src.weights, series=win.series, starts=win.starts,
                    origin_s=win.origin.astype("datetime64[s]").astype(np.int64))

        # plain loop: one process, one model; with --threads and with 1 torch thread (on a busy box more threads
        # can be slower); the faster of the two is the reference
        plain_runs = {}
        for threads in sorted({args.threads, 1}, reverse=True):
            t0 = time.perf_counter()
            scorer = WindowScorer(**base, torch_threads=threads)
            t1 = time.perf_counter()
            plain = np.concatenate([scorer({"data": b})["forecast"] for b in _batches(n, args.batch_size)])
            t2 = time.perf_counter()
            plain_runs[threads] = (n / (t2 - t1), t1 - t0, t2 - t0, plain)
            print(f"plain loop, {threads} thread(s): {n / (t2 - t1):.1f} windows/s", file=sys.stderr)
            del scorer
        best_threads = max(plain_runs, key=lambda k: plain_runs[k][0])
        plain_wps, load_s, total_s, plain = plain_runs[best_threads]
        same_threads = all(np.array_equal(v[3], plain) for v in plain_runs.values())

        # Ray Data: map_batches with the callable class on --actors actors (1 CPU, 1 torch thread each)
        init_s = ensure_ray(num_cpus=args.actors)
        timings: dict[str, float] = {}
        t3 = time.time()
        ray_y = score_ray(dict(base, torch_threads=1), n, args.batch_size, concurrency=args.actors, num_cpus=1,
                          num_gpus=0, timings=timings)
        t4 = time.time()
        ray_wps = n / (timings["last_done"] - timings["first_ready"])
        import ray
        ray.shutdown()

    identical = bool(np.array_equal(plain, ray_y)) and same_threads
    res = {"windows": n, "split": args.split, "batch_size": args.batch_size, "grid": src.config["grid"],
           "backbone": src.config["model_cfg"]["backbone"], "vfm_blocks": src.config["model_cfg"]["vfm_blocks"],
           "plain_threads": best_threads, "actors": args.actors,
           "plain_windows_per_s_by_threads": {k: round(v[0], 1) for k, v in plain_runs.items()},
           "plain_windows_per_s": round(plain_wps, 1), "ray_windows_per_s": round(ray_wps, 1),
           "ratio": round(ray_wps / plain_wps, 3), "identical": identical,
           "max_abs_diff": float(np.abs(plain - ray_y).max()),
           "plain_model_load_s": round(load_s, 2), "plain_total_s": round(total_s, 2),
           "ray_init_s": round(init_s, 2), "ray_actor_start_s": round(timings["first_ready"] - t3, 2),
           "ray_total_s": round(t4 - t3, 2), "data_s": round(data_s, 1)}
    print(f"plain loop ({best_threads} thread(s)): {plain_wps:.1f} windows/s;  Ray Data ({args.actors} actors): "
          f"{ray_wps:.1f} windows/s;  ratio {res['ratio']};  identical arrays: {identical}")
    print(json.dumps(res))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
