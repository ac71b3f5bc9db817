"""Batch forecasts: windows/s of Ray Data (map_batches, 2 actors with one model each, 1 torch thread each) vs a plain
loop in one process (the same scorer; the faster of --threads and 1 torch thread, chosen in a first pass) on the same
windows and batches, in ``--runs`` alternating runs (plain first, then Ray first, ...): the median and spread
(min-max) of each side and of the per-run ratio. The result arrays must be identical. Throughput is measured from
"model loaded" to "last batch scored" on both sides (Ray start-up, actor start-up and the end-to-end time are reported
separately; ``ray_busy_share``: the share of the actors' time inside the model calls, ``ray_start_skew_s``: how much
later the last actor was ready than the first). Goal: ratio (ray / plain, median) >= 0.9 on 2 cores.

    python benchmarks/bench_forecast.py [--span-days 12] [--split train] [--batch-size 16] [--actors 2] [--threads 2]
                                        [--runs 5]

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


def spread(v: list[float], nd: int = 3) -> dict[str, float]:
    import statistics

    return {"median": round(statistics.median(v), nd), "min": round(min(v), nd), "max": round(max(v), nd)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span-days", type=int, default=12)
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the plain loop (default: 2 = actors)")
    ap.add_argument("--runs", type=int, default=5, help="alternating plain / Ray Data runs (median and spread)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging
    import statistics

    import numpy as np
    import torch

    logging.basicConfig(level=logging.WARNING)
    from stvfm.config import load_params
    from stvfm.paths import dataset_paths
    from stvfm.serving.batch import (
        WindowScorer,
        _batches,
        ensure_ray,
        model_source,
        score_ray,
        split_windows,
    )
    from stvfm.serving.version import write_version
    from stvfm.training.components import build_components
    from stvfm.training.stage import version_from_best

    load_start = os.getloadavg()
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
        base = dict(
            config=src.config,
            weights=src.weights,
            series=win.series,
            starts=win.starts,
            origin_s=win.origin.astype("datetime64[s]").astype(np.int64),
        )
        batches = _batches(n, args.batch_size)

        def plain_run(threads: int) -> tuple[float, float, np.ndarray]:
            """(windows/s from model loaded to last batch scored, model load s, forecasts)"""
            t0 = time.perf_counter()
            scorer = WindowScorer(**base, torch_threads=threads)
            t1 = time.perf_counter()
            y = np.concatenate([scorer({"data": b})["forecast"] for b in batches])
            return n / (time.perf_counter() - t1), t1 - t0, y

        threads_before = torch.get_num_threads()
        # the plain loop's threads: the faster of --threads and 1 in a first pass (on a busy box more threads can be
        # slower), then fixed for every run
        first = {k: plain_run(k) for k in sorted({args.threads, 1}, reverse=True)}
        plain_threads = max(first, key=lambda k: first[k][0])
        reference = first[plain_threads][2]
        identical = all(np.array_equal(v[2], reference) for v in first.values())

        init_s = ensure_ray(num_cpus=args.actors)
        runs: list[dict[str, float]] = []
        for i in range(args.runs):  # alternating order: load drifts hit both sides alike
            order = ("plain", "ray") if i % 2 == 0 else ("ray", "plain")
            r: dict[str, float] = {"load": os.getloadavg()[0]}
            for side in order:
                if side == "plain":
                    r["plain_wps"], r["plain_load_s"], y = plain_run(plain_threads)
                else:
                    timings: dict[str, float] = {}
                    t3 = time.time()
                    y = score_ray(
                        dict(base, torch_threads=1),
                        n,
                        args.batch_size,
                        concurrency=args.actors,
                        num_cpus=1,
                        num_gpus=0,
                        timings=timings,
                    )
                    span = timings["last_done"] - timings["first_ready"]
                    r.update(
                        ray_wps=n / span,
                        ray_actor_start_s=timings["first_ready"] - t3,
                        ray_total_s=time.time() - t3,
                        ray_busy_share=timings["busy"] / (args.actors * span),
                        ray_start_skew_s=timings["last_ready"] - timings["first_ready"],
                    )
                identical = identical and bool(np.array_equal(y, reference))
            r["ratio"] = r["ray_wps"] / r["plain_wps"]
            runs.append(r)
            print(
                f"run {i + 1}/{args.runs} ({' then '.join(order)}): plain {r['plain_wps']:.1f}, Ray Data "
                f"{r['ray_wps']:.1f} windows/s, ratio {r['ratio']:.3f}, actors busy {r['ray_busy_share']:.2f}, "
                f"load {r['load']:.2f}",
                file=sys.stderr,
            )
        import ray

        ray.shutdown()
        torch.set_num_threads(threads_before)

    col = {k: [r[k] for r in runs] for k in runs[0]}
    res = {
        "windows": n,
        "split": args.split,
        "batch_size": args.batch_size,
        "batches": len(batches),
        "grid": src.config["grid"],
        "backbone": src.config["model_cfg"]["backbone"],
        "vfm_blocks": src.config["model_cfg"]["vfm_blocks"],
        "runs": args.runs,
        "plain_threads": plain_threads,
        "actors": args.actors,
        "plain_windows_per_s_by_threads": {k: round(v[0], 1) for k, v in first.items()},
        "plain_windows_per_s": spread(col["plain_wps"], 1),
        "ray_windows_per_s": spread(col["ray_wps"], 1),
        "ratio_per_run": spread(col["ratio"]),
        "ratio": round(statistics.median(col["ratio"]), 3),
        "ray_busy_share": spread(col["ray_busy_share"]),
        "ray_start_skew_s": spread(col["ray_start_skew_s"], 2),
        "ray_actor_start_s": spread(col["ray_actor_start_s"], 2),
        "ray_total_s": spread(col["ray_total_s"], 2),
        "plain_model_load_s": spread(col["plain_load_s"], 2),
        "identical": identical,
        "ray_init_s": round(init_s, 2),
        "data_s": round(data_s, 1),
        "load_start": [round(v, 2) for v in load_start],
        "load_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(
        f"plain loop ({plain_threads} thread(s)): median {res['plain_windows_per_s']['median']} windows/s;  Ray Data "
        f"({args.actors} actors): median {res['ray_windows_per_s']['median']} windows/s;  ratio median "
        f"{res['ratio']} ({res['ratio_per_run']['min']}-{res['ratio_per_run']['max']} over {args.runs} alternating "
        f"runs);  identical arrays: {identical}"
    )
    print(json.dumps(res))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
