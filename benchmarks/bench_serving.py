"""Serving overhead: `stvfm serve` over loopback HTTP vs `Forecaster.predict` in-process, on the same model and windows.

Measured interleaved (one in-process call, one server call, alternating which goes first), for batch 1 and batch 32,
repeated ``--rounds`` times: p50/p99 latency of each side and the ratio server / in-process of the p50s (goal: <= 1.5
for both batch sizes). The server side is what a client sees from numpy arrays to numpy arrays: encoding the request,
HTTP on 127.0.0.1, the server's checks and forecast, decoding the answer. Then 4 concurrent clients x batch 1 (p50,
p99, errors, requests/s), and the server's RSS after warm-up, at its peak and at the end. Both sides use the same
torch thread count (``--threads``). ``--mlflow`` also measures ``mlflow models serve`` on the same version (registered
in a temporary sqlite registry) for reference. Loopback only; bounded (every request has a timeout).

    python benchmarks/bench_serving.py [--rounds 3] [--reps-b1 30] [--reps-b32 6] [--threads 1] [--mlflow]

Builds a small synthetic project in a temp dir with the real stages and a random-init model of the default size with
``--vfm-blocks`` VFM blocks (1: the smoke profile's; latency does not depend on the weights). The answers must equal
the in-process forecast exactly (batch 1). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MB = 2**20


def make_project(root: Path, span_days: int, vfm_blocks: int) -> None:
    import yaml

    from stvfm.config import load_raw, params_from_dict
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download

    raw = load_raw(ROOT / "params.yaml")
    raw["datasets"] = ["synthetic"]
    raw["data"]["synthetic"]["span_days"] = span_days
    raw["model"]["vfm_blocks"] = vfm_blocks
    raw["tracking"]["tracking_uri"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = params_from_dict(raw)
    for f in (run_download, run_grid, run_flow, run_split):
        f("synthetic", p, root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, cwd: Path, log: Path, url: str, timeout: float = 300) -> subprocess.Popen:
    import requests

    with open(log, "w") as out:  # the server keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"server not up in {timeout} s: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def pct(xs, q) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs) * 1e3, q))


class Client:
    """numpy in, numpy out over HTTP: orjson encodes the request, the answer is parsed with orjson."""

    def __init__(self, url: str):
        import requests

        self.url, self.s = f"{url}/invocations", requests.Session()
        self.timings: list[dict[str, float]] = []  # the server's Server-Timing of each answer (stvfm serve), ms

    def __call__(self, flow, last):
        import numpy as np
        import orjson

        body = orjson.dumps({"inputs": {"flow": flow, "last_time": last}}, option=orjson.OPT_SERIALIZE_NUMPY)
        r = self.s.post(self.url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        st = r.headers.get("server-timing")
        if st:
            self.timings.append({k.strip(): float(v) for k, _, v in (p.partition(";dur=") for p in st.split(","))})
        return np.asarray(orjson.loads(r.content)["predictions"], dtype=np.float32)


def interleaved(local, remote, flow, last, reps: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    for i in range(reps):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            t = time.perf_counter()
            (local if side == 0 else remote)(flow, last)
            (a if side == 0 else b).append(time.perf_counter() - t)
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span-days", type=int, default=5)
    ap.add_argument("--vfm-blocks", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps-b1", type=int, default=30)
    ap.add_argument("--reps-b32", type=int, default=6)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--client-reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the in-process side")
    ap.add_argument("--mlflow", action="store_true", help="also measure `mlflow models serve` on the same version")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import numpy as np
    import psutil
    import torch

    logging.basicConfig(level=logging.WARNING)
    from stvfm.config import load_params
    from stvfm.paths import dataset_paths
    from stvfm.serving.forecaster import load_forecaster
    from stvfm.serving.version import write_version
    from stvfm.training.components import build_components
    from stvfm.training.stage import version_from_best

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        make_project(root, args.span_days, args.vfm_blocks)
        params = load_params(root / "params.yaml")
        torch.manual_seed(0)
        comp = build_components(params, "synthetic", root, splits=("test",))
        best = {**comp.meta, "model_state": comp.model.state_dict(), "epoch": 0, "val": {}}
        folder = write_version(root / "version", *version_from_best(best, dataset_paths("synthetic", root)))
        del comp
        f = load_forecaster(folder)
        import xarray as xr

        ds = xr.open_zarr(root / "data/grid/synthetic.zarr", consolidated=False)
        series = ds["flow"].transpose("time", "y", "x", "channel").values.astype(np.float32)
        times = ds["time"].values.astype("datetime64[s]").astype(np.int64)
        L = f.history + 1
        ends = np.linspace(L, len(series), 32).astype(int)
        flows = {b: np.stack([series[e - L : e] for e in ends[:b]]) for b in (1, 32)}
        lasts = {b: times[ends[:b] - 1] for b in (1, 32)}

        def local(flow, last):
            return f.predict(flow, last)

        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(
            [
                sys.executable,
                "-m",
                "stvfm.cli",
                "serve",
                "--model",
                str(folder),
                "--port",
                str(port),
                "--root",
                str(root),
                "--set",
                f"serve.torch_threads={args.threads}",
            ],
            env,
            root,
            root / "serve.log",
            url,
        )
        try:
            proc = psutil.Process(server.pid)
            remote = Client(url)
            same = np.abs(remote(flows[1], lasts[1]) - local(flows[1], lasts[1])).max()
            for b in (1, 32):  # warm-up
                for _ in range(2):
                    remote(flows[b], lasts[b])
                    local(flows[b], lasts[b])
            rss_start = proc.memory_info().rss
            peak = [rss_start]
            done = threading.Event()

            def watch():
                while not done.is_set():
                    peak[0] = max(peak[0], proc.memory_info().rss)
                    time.sleep(0.05)

            threading.Thread(target=watch, daemon=True).start()
            res_rounds = []
            samples = {1: ([], []), 32: ([], [])}
            phases: dict[int, list[dict[str, float]]] = {1: [], 32: []}
            for r in range(args.rounds):
                row = {}
                for b, reps in ((1, args.reps_b1), (32, args.reps_b32)):
                    remote.timings.clear()
                    a, s = interleaved(local, remote, flows[b], lasts[b], reps)
                    phases[b].extend(remote.timings)
                    samples[b][0].extend(a)
                    samples[b][1].extend(s)
                    row[f"ratio_p50_b{b}"] = pct(s, 50) / pct(a, 50)
                    print(
                        f"round {r + 1} batch {b}: in-process p50 {pct(a, 50):.1f} ms, server p50 {pct(s, 50):.1f} "
                        f"ms, ratio {row[f'ratio_p50_b{b}']:.3f} (load {os.getloadavg()[0]:.1f})",
                        file=sys.stderr,
                    )
                res_rounds.append(row)

            # 4 clients at once, batch 1
            lat, errors = [], []

            def client():
                c = Client(url)
                for _ in range(args.client_reps):
                    t = time.perf_counter()
                    try:
                        c(flows[1], lasts[1])
                        lat.append(time.perf_counter() - t)
                    except Exception as e:  # counted, reported
                        errors.append(str(e)[:100])

            t = time.perf_counter()
            ths = [threading.Thread(target=client) for _ in range(args.clients)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            conc_s = time.perf_counter() - t
            done.set()
            rss_end = proc.memory_info().rss
        finally:
            stop(server)

        mlflow_res = {}
        if args.mlflow:
            mlflow_res = bench_mlflow(root, folder, f, flows, lasts, local, args, env)

    res = {
        "ratio_p50_b1": round(float(np.median([r["ratio_p50_b1"] for r in res_rounds])), 3),
        "ratio_p50_b32": round(float(np.median([r["ratio_p50_b32"] for r in res_rounds])), 3),
        "ratio_p50_b1_rounds": [round(r["ratio_p50_b1"], 3) for r in res_rounds],
        "ratio_p50_b32_rounds": [round(r["ratio_p50_b32"], 3) for r in res_rounds],
        **{
            f"{side}_{q}_ms_b{b}": round(pct(samples[b][i], int(q[1:])), 1)
            for b in (1, 32)
            for i, side in enumerate(("inproc", "server"))
            for q in ("p50", "p99")
        },
        f"concurrent{args.clients}_b1_p50_ms": round(pct(lat, 50), 1) if lat else None,
        f"concurrent{args.clients}_b1_p99_ms": round(pct(lat, 99), 1) if lat else None,
        f"concurrent{args.clients}_errors": len(errors),
        f"concurrent{args.clients}_requests_per_s": round(len(lat) / conc_s, 1),
        **{
            f"server_timing_p50_ms_b{b}": {
                k: round(float(np.median([t[k] for t in phases[b]])), 1) for k in phases[b][0]
            }
            for b in (1, 32)
            if phases[b]
        },
        "server_rss_mb_start": round(rss_start / MB),
        "server_rss_mb_peak": round(peak[0] / MB),
        "server_rss_mb_end": round(rss_end / MB),
        "max_abs_diff_b1": float(same),
        "threads": args.threads,
        "vfm_blocks": args.vfm_blocks,
        "rounds": args.rounds,
        "reps": {"b1": args.reps_b1, "b32": args.reps_b32},
        "load_avg_start": [round(v, 2) for v in load0],
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        **mlflow_res,
    }
    print(
        f"server / in-process p50: batch 1 {res['ratio_p50_b1']}, batch 32 {res['ratio_p50_b32']} "
        f"(goal <= 1.5); answers identical: {same == 0}"
    )
    print(json.dumps(res))
    return 0 if same == 0 and not errors else 1


def bench_mlflow(root: Path, folder: Path, f, flows, lasts, local, args, env) -> dict:
    """`mlflow models serve` on the same version, registered in a temp sqlite registry: p50 ratios, interleaved."""
    import mlflow
    import numpy as np

    from stvfm.serving.registry import log_and_register_model
    from stvfm.serving.version import CONFIG_FILE, WEIGHTS_FILE, read_config, read_weights

    db = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(db)
    exp = mlflow.create_experiment("bench", artifact_location=(root / "art").as_uri())
    with mlflow.start_run(experiment_id=exp):
        log_and_register_model(
            read_config(folder / CONFIG_FILE, "x"), read_weights(folder / WEIGHTS_FILE, "x"), "synthetic", 1.0
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/stvfm-synthetic/1",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        {
            **env,
            "MLFLOW_TRACKING_URI": db,
            "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        root,
        root / "mlflow-serve.log",
        url,
    )
    try:
        remote = Client(url)
        for b in (1, 32):
            remote(flows[b], lasts[b])
        out = {}
        for b, reps in ((1, args.reps_b1), (32, args.reps_b32)):
            a, s = interleaved(local, remote, flows[b], lasts[b], reps)
            out[f"mlflow_ratio_p50_b{b}"] = round(pct(s, 50) / pct(a, 50), 3)
            out[f"mlflow_p50_ms_b{b}"] = round(pct(s, 50), 1)
            print(f"mlflow models serve, batch {b}: ratio {out[f'mlflow_ratio_p50_b{b}']}", file=sys.stderr)
        out["mlflow_max_abs_diff_b1"] = float(np.abs(remote(flows[1], lasts[1]) - local(flows[1], lasts[1])).max())
        return out
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
