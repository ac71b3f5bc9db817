"""Speed of the dual branch: train-step time of ST-VFM `full` vs ablation #4 `adapter` (the paper's Table 1 of the
appendix: 2.06 / 1.08 min = 1.91×), on CPU, same batch, two grids (16×8 BikeNYC-like, 32×32 TDrive-like).

Also measured in the same run:
  * `full` with one VFM call per branch (the unfused reference) next to ours (both branches stacked in one call);
  * FLOPs of one train step (torch.utils.flop_counter) -> achieved GFLOP/s, next to a large fp32 matmul's GFLOP/s
    (the machine's practical limit);
  * trainable / total parameters of every variant × backbone at the paper's settings (built on the meta device).

Default: vit_tiny with its first 4 blocks (the CPU profile of params.yaml), batch 8 on 16×8 and 2 on 32×32 (the
same batch for both variants), 3 timed steps per case (interleaved, median wall and process-CPU time; on a shared
machine the CPU-time ratio is the steadier one). Last stdout line: one JSON object; "ratio" = full / adapter wall ms
per step on the 16×8 grid.

    python benchmarks/bench_model.py [--batch 8] [--batch-large 2] [--reps 3] [--blocks 4] [--backbone vit_tiny]
                                     [--bf16] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils.flop_counter import FlopCounterMode

from stvfm.config import ModelConfig
from stvfm.models.backbone import BACKBONES
from stvfm.models.factory import build_model, build_model_on_meta
from stvfm.models.loss import stvfm_loss
from stvfm.models.stvfm import VARIANT_SPECS, count_parameters

PAPER_RATIO = 2.06 / 1.08


def make_step(model, x, xf, lam=0.5):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _ = stvfm_loss(model(x, xf), x, xf, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, time.process_time() - c0

    return step


def step_flops(model, x, xf) -> int:
    fc = FlopCounterMode(display=False)
    with fc:
        loss, _ = stvfm_loss(model(x, xf), x, xf, 0.5)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def matmul_gflops(n: int = 2048, reps: int = 5) -> tuple[float, float]:
    """(GFLOP/s by wall time, GFLOP/s per CPU-second) of an n×n fp32 matmul, best of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    ts, cs = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return 2 * n**3 / min(ts) / 1e9, 2 * n**3 / min(cs) / 1e9


def time_grid(base: ModelConfig, grid, channels, batch, reps, warmup=2):
    torch.manual_seed(0)
    x = torch.randn(batch, 6, channels, *grid)
    xf = torch.diff(torch.cat([x[:, :1], x], 1), dim=1)
    models = {}
    for name, variant, fused in (("adapter", "adapter", True), ("full", "full", True), ("full_unfused", "full", False)):
        torch.manual_seed(0)
        m, _ = build_model(dataclasses.replace(base, variant=variant), grid, channels)
        m.train()
        m.fuse_branches = fused
        models[name] = m
    steps = {k: make_step(m, x, xf) for k, m in models.items()}
    for _ in range(warmup):
        for s in steps.values():
            s()
    times = {k: [] for k in steps}
    for _ in range(reps):  # interleaved, so load changes on a shared machine hit every case alike
        for k, s in steps.items():
            times[k].append(s())
    ms = {k: 1000 * statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu_ms = {k: 1000 * statistics.median(t[1] for t in v) for k, v in times.items()}
    flops = {k: step_flops(models[k], x, xf) for k in ("adapter", "full")}
    return ms, cpu_ms, flops, {k: count_parameters(m) for k, m in models.items() if k != "full_unfused"}


def param_table(grid=(16, 8), channels=2):
    rows = {}
    for backbone in [b for b in ("dinov2_vits14", "clip_vitb16", "deit_vitb16", "vit_tiny") if b in BACKBONES]:
        for variant in VARIANT_SPECS:
            cfg = ModelConfig(variant=variant, backbone=backbone, vfm_blocks=None, prompt_layers=2)
            m, _ = build_model_on_meta(cfg, grid, channels)
            tr, tot = count_parameters(m)
            rows[f"{backbone}/{variant}"] = {"trainable": tr, "total": tot}
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8, help="windows per step on 16x8")
    ap.add_argument("--batch-large", type=int, default=2, help="windows per step on 32x32 (8x the tokens per window)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=4, help="VFM blocks used (vfm_blocks)")
    ap.add_argument("--backbone", default="vit_tiny")
    ap.add_argument("--bf16", action="store_true", help="time under bf16 autocast")
    ap.add_argument("--quick", action="store_true", help="16x8 only, 2 reps (smoke run)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("stvfm.models.backbone").setLevel(logging.ERROR)

    base = ModelConfig(
        backbone=args.backbone, allow_random_init=True, vfm_blocks=args.blocks, prompt_layers=2, bf16=args.bf16
    )
    t_start = time.perf_counter()
    mm, mm_cpu = matmul_gflops()
    print(
        f"threads {torch.get_num_threads()}  fp32 matmul 2048^3: {mm:.1f} GFLOP/s ({mm_cpu:.1f} per CPU-s)  "
        f"(backbone {args.backbone}, {args.blocks} blocks, batch {args.batch}, bf16 {args.bf16})"
    )
    grids = [(16, 8)] if args.quick else [(16, 8), (32, 32)]
    reps = 2 if args.quick else args.reps
    out = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "vfm_blocks": args.blocks,
        "batch": args.batch,
        "bf16": args.bf16,
        "matmul_gflops": round(mm, 1),
        "matmul_gflops_per_cpu_s": round(mm_cpu, 1),
        "paper_ratio": round(PAPER_RATIO, 2),
        "grids": {},
    }
    print(
        f"{'grid':7s} {'B':>2s} {'adapter ms':>11s} {'full ms':>9s} {'ratio':>6s} {'full 2-call ms':>15s} "
        f"{'cpu ratio':>9s} {'GF/step a|f':>14s} {'flop ratio':>10s} {'GFLOP/s a|f':>13s}"
    )
    for grid in grids:
        batch = args.batch if grid == (16, 8) else args.batch_large
        ms, cpu_ms, flops, params = time_grid(base, grid, 2, batch, reps)
        g = {
            "batch": batch,
            "adapter_ms": round(ms["adapter"], 1),
            "full_ms": round(ms["full"], 1),
            "full_unfused_ms": round(ms["full_unfused"], 1),
            "ratio": round(ms["full"] / ms["adapter"], 3),
            "unfused_ratio": round(ms["full_unfused"] / ms["adapter"], 3),
            "cpu_ms": {k: round(v, 1) for k, v in cpu_ms.items()},
            "cpu_ratio": round(cpu_ms["full"] / cpu_ms["adapter"], 3),
            "gflop_per_step": {k: round(v / 1e9, 2) for k, v in flops.items()},
            "flop_ratio": round(flops["full"] / flops["adapter"], 3),
            "achieved_gflops": {k: round(flops[k] / 1e6 / ms[k], 1) for k in flops},
            "achieved_gflops_per_cpu_s": {k: round(flops[k] / 1e6 / cpu_ms[k], 1) for k in flops},
            "params": {k: {"trainable": v[0], "total": v[1]} for k, v in params.items()},
        }
        out["grids"][f"{grid[0]}x{grid[1]}"] = g
        print(
            f"{grid[0]}x{grid[1]:<4d} {batch:2d} {g['adapter_ms']:11.1f} {g['full_ms']:9.1f} {g['ratio']:6.2f} "
            f"{g['full_unfused_ms']:15.1f} {g['cpu_ratio']:9.2f} "
            f"{g['gflop_per_step']['adapter']:6.1f}|{g['gflop_per_step']['full']:<6.1f} "
            f"{g['flop_ratio']:10.2f} {g['achieved_gflops']['adapter']:6.1f}|{g['achieved_gflops']['full']:<6.1f}"
        )
    out["ratio"] = out["grids"]["16x8"]["ratio"]
    out["params_paper_settings_16x8"] = param_table()
    print("trainable / total parameters, paper settings (all 12 blocks, D_T 64, 2 cross-prompt layers), 16x8, C=2:")
    for k, v in out["params_paper_settings_16x8"].items():
        print(f"  {k:28s} {v['trainable']:>11,} / {v['total']:>12,}  ({100 * v['trainable'] / v['total']:.1f}%)")
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
