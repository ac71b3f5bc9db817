"""Training at the machine's limit: the train step of profile `real` on a real sample and of the paper architecture
(DINOv2 ViT-S/14, all 12 blocks, random init) on the same grid, against the bf16 and fp32 matmul peaks measured in the
same process; and, with ``--fit``, the wall time of a converged `real` ST-VFM fit against the STID baseline's fit.

Measured, in one process with ``--threads`` torch threads (default 2):

  * matmul peak: square bf16 and fp32 matmuls (best of a few sizes), one sample per round;
  * each case's train step: ``LoopTrainer.train_step`` (the loop's own step: autocast as the model says, Eq. 11 with
    the run's loss, backward, clipping, optimizer and scheduler step) on one fixed batch of the train split; a few
    steps per round, interleaved with the peak samples, several rounds: medians and spread (min, max) over rounds;
  * FLOPs of one step (torch.utils.flop_counter, forward + backward) -> achieved GFLOP/s and MFU = achieved ÷ peak of
    the same round (``*_mfu_bf16``, ``*_mfu_fp32``);
  * the share of the top modules: each top-level sub-module's forward + backward timed alone on the inputs it saw in
    the step (its FLOPs too), and the rest of the step (loss, optimizer, glue) as ``other``;
  * the top operators of the `real` and paper bf16 steps (torch.profiler, self CPU time) and, from the matmul share
    of that time, the MFU ceiling: the share of the bf16 peak the step would reach if every matmul took no time at all
    (``*_mfu_bf16_ceiling`` = MFU ÷ (1 - matmul share)) — what no faster matmul can lift;
  * the matmul units behind the peaks: the CPU's bf16 flags (AMX, AVX512-BF16) and ``ONEDNN_MAX_CPU_ISA`` if set
    (e.g. ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` measures this machine as one without AMX), and
    ``bf16_matmul_speedup`` = bf16 peak ÷ fp32 peak (below 1, bf16 autocast slows training here);
  * what runs in which dtype: the output dtype of every matmul, LayerNorm, softmax, activation, add and concatenation
    of one forward, per top-level part (a dispatch mode over the step's forward under the loop's autocast).

Cases: ``real`` (profile real), ``paper_bf16`` and ``paper_fp32`` (profile paper, ``model.bf16`` on / off, random
init, batch ``--paper-batch``), ``stid`` (the STID baseline's recipe, batch 64, for reference).

``--fit`` also trains profile `real` and the STID baseline (``baselines.stid``) on the sample to convergence, one after
the other (``--fit-threads`` each; ~15 min on 2 cores) and reports ``fit_ratio_stvfm_stid`` (wall time; ``cpu_ratio``:
process CPU time, steadier on a shared machine) and both val MAE/RMSE (``--fit-epochs`` caps both, for smoke runs).

    python benchmarks/bench_train.py [--threads 2] [--rounds 5] [--steps 3] [--dataset bikenyc2_test] [--fit]
                                     [--no-paper] [--quick] [--set key=value ...]

``--quick`` (smoke, seconds): the embedded synthetic city (4 days), batch 2 (1 in the paper case, one VFM block,
bf16 only), small matmuls, 2 rounds of 1 step. The data stages run in a temporary project (or pass ``--root`` of a
project where ``stvfm data all <dataset> --set profile=real`` has run). Last stdout line: one JSON object (``ratio`` =
``fit_ratio_stvfm_stid``, null without ``--fit``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]

# top-level parts of ST-VFM (attribute names) and the row each is reported under
PARTS = {
    "st_in": "token adapters",
    "flow_in": "token adapters",
    "vfm": "frozen VFM (+ adapters)",
    "st_head": "D_VFM->D_T heads",
    "flow_head": "D_VFM->D_T heads",
    "cross": "cross-prompt",
    "st_dec": "temporal decoders",
    "flow_dec": "temporal decoders",
    "output_path": "identity path (STID)",
    "time_in": "clock",
    "time_dec": "clock",
}
MATMUL_OPS = (
    "aten::mm",
    "aten::bmm",
    "aten::addmm",
    "aten::baddbmm",
    "aten::matmul",
    "aten::linear",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- the project
def make_project(root: Path, dataset: str, span_days: int | None) -> None:
    """A temporary project with params.yaml (local_sources made absolute) and the data stages of ``dataset`` run."""
    import yaml

    from stvfm.config import load_params, load_raw
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download

    raw = load_raw(ROOT / "params.yaml")
    raw["datasets"] = [dataset]
    for name, src in (raw.get("local_sources") or {}).items():
        if isinstance(src, dict) and not Path(src["path"]).is_absolute():
            src["path"] = str((ROOT / src["path"]).resolve())
        elif isinstance(src, str) and not Path(src).is_absolute():
            raw["local_sources"][name] = str((ROOT / src).resolve())
    if span_days:
        raw["data"]["synthetic"]["span_days"] = span_days
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    p = load_params(root / "params.yaml", ["profile=real"])
    for f in (run_download, run_grid, run_flow, run_split):
        f(dataset, p, root)


# ---------------------------------------------------------------------------------------------------- measurements
def matmul_gflops(dtype: torch.dtype, sizes: tuple[int, ...], inputs: dict) -> float:
    """Best GFLOP/s of one n×n @ n×n matmul over ``sizes`` (inputs made once, kept warm in ``inputs``)."""
    best = 0.0
    for n in sizes:
        key = (dtype, n)
        if key not in inputs:
            inputs[key] = (torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype))
            inputs[key][0] @ inputs[key][1]
        a, b = inputs[key]
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


@dataclasses.dataclass
class Case:
    name: str
    trainer: Any  # stvfm.training.loop.LoopTrainer
    batch: tuple
    bf16: bool
    flops: int = 0
    times: list[float] = dataclasses.field(default_factory=list)  # median step seconds of each round
    cpu: list[float] = dataclasses.field(default_factory=list)  # median process CPU seconds of a step, each round

    def step(self) -> None:
        self.trainer.train_step(*self.batch)

    def forward_only(self):
        x, xf, _, _, tid = self.batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.trainer.model(x, xf, time_ids=tid)


def build_case(name: str, params, dataset: str, root: Path, batch_size: int) -> Case:
    from torch.utils.data import DataLoader

    from stvfm.training.components import build_components
    from stvfm.training.loop import LoopTrainer, _to, loss_fn_for

    torch.manual_seed(params.train.seed)
    comp = build_components(params, dataset, root, splits=("train",))
    loader = DataLoader(comp.datasets["train"], batch_size=batch_size, shuffle=False, drop_last=True)
    batch = next(iter(loader))
    cfg = dataclasses.replace(params.train, epochs=1000, warmup_epochs=0)  # the LR schedule never reaches 0 here
    tr = LoopTrainer(
        comp.model,
        [batch],
        [batch],
        cfg,
        loss_fn=loss_fn_for(params, comp.scaler),
        inverse=comp.inverse,
        bf16=comp.bf16,
        meta=comp.meta,
    )
    comp.model.train()
    return Case(name, tr, _to(batch, "cpu"), comp.bf16)


def step_flops(case: Case) -> int:
    """FLOPs of one step, counted on the eager model (a compiled step does the same work)."""
    compiled, case.trainer.compiled = case.trainer.compiled, None
    fc = FlopCounterMode(display=False)
    try:
        with fc:
            case.step()
    finally:
        case.trainer.compiled = compiled
    return int(fc.get_total_flops())


def _detached(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone().requires_grad_(v.requires_grad and v.is_floating_point())
    if isinstance(v, (list, tuple)):
        return type(v)(_detached(a) for a in v)
    return v


def _grad_outputs(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out] if out.requires_grad else []
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _grad_outputs(o)]
    if dataclasses.is_dataclass(out):
        return [t for f in dataclasses.fields(out) for t in _grad_outputs(getattr(out, f.name))]
    return []


def module_shares(case: Case, reps: int) -> dict[str, dict[str, float]]:
    """Forward + backward of each top-level part alone, on the inputs it saw in the step: ms, GFLOP, share of the
    step (median step time of the timing rounds), achieved GFLOP/s."""
    model = case.trainer.model
    names = [n for n in PARTS if getattr(model, n, None) is not None]
    seen: dict[str, tuple] = {}

    def keep(name: str) -> Callable:
        def hook(module, args, kwargs, output) -> None:  # returns None: the output is left as it is
            if name not in seen:
                seen[name] = (_detached(args), {k: _detached(v) for k, v in kwargs.items()})

        return hook

    hooks = [getattr(model, n).register_forward_hook(keep(n), with_kwargs=True) for n in names]
    try:
        case.forward_only()
    finally:
        for h in hooks:
            h.remove()
    rows: dict[str, dict[str, float]] = {}
    step_s = statistics.median(case.times)
    for n in names:
        if n not in seen:
            continue
        mod, (args, kwargs) = getattr(model, n), seen[n]

        def run(mod=mod, args=args, kwargs=kwargs):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case.bf16):
                out = mod(*args, **kwargs)
            outs = _grad_outputs(out)
            if outs:
                torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

        run()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t)
        fc = FlopCounterMode(display=False)
        with fc:
            run()
        model.zero_grad(set_to_none=True)
        row = rows.setdefault(PARTS[n], {"ms": 0.0, "gflop": 0.0})
        row["ms"] += 1000 * statistics.median(ts)
        row["gflop"] += fc.get_total_flops() / 1e9
    total_ms = sum(r["ms"] for r in rows.values())
    rest_gflop = case.flops / 1e9 - sum(r["gflop"] for r in rows.values())
    rows["other (loss, optimizer, glue)"] = {"ms": max(0.0, 1000 * step_s - total_ms), "gflop": max(0.0, rest_gflop)}
    for r in rows.values():
        r["share"] = round(r["ms"] / (1000 * step_s), 3)
        r["flop_share"] = round(r["gflop"] / (case.flops / 1e9), 3) if case.flops else 0.0
        r["gflops"] = round(r["gflop"] / r["ms"] * 1000, 1) if r["ms"] > 0 else 0.0
        r["ms"], r["gflop"] = round(r["ms"], 2), round(r["gflop"], 3)
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["ms"]))


def op_profile(case: Case, steps: int = 3, top: int = 12) -> dict[str, Any]:
    """Top operators by self CPU time over ``steps`` steps (torch.profiler) and the matmul share of the total."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            case.step()
    ev = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]
    total = sum(t for _, t, _ in ev) or 1.0
    ev.sort(key=lambda r: -r[1])
    return {
        "matmul_share": round(sum(t for k, t, _ in ev if k in MATMUL_OPS) / total, 3),
        "ops_per_step": int(sum(c for k, _, c in ev if k.startswith("aten::")) / steps),
        "top": {k: {"share": round(t / total, 3), "calls_per_step": round(c / steps, 1)} for k, t, c in ev[:top]},
    }


AUDIT_OPS = {
    "mm": "matmul",
    "addmm": "matmul",
    "bmm": "matmul",
    "baddbmm": "matmul",
    "native_layer_norm": "layer_norm",
    "_softmax": "softmax",
    "gelu": "gelu",
    "relu": "relu",
    "add": "add",
    "cat": "cat",
}


def dtype_audit(case: Case) -> dict[str, dict[str, list[str]]]:
    """What runs in which dtype in one forward of the step (the loop's autocast): per top-level part, the output
    dtypes of its matmuls, LayerNorms, softmaxes, activations, adds (residuals) and concatenations."""
    from torch.utils._python_dispatch import TorchDispatchMode

    model = case.trainer.model
    where: list[str] = ["(model)"]
    seen: dict[str, dict[str, set]] = {}

    class Audit(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            kind = AUDIT_OPS.get(func.__name__.split(".")[0])
            if kind is not None:
                t = out[0] if isinstance(out, (tuple, list)) else out
                if isinstance(t, torch.Tensor):
                    seen.setdefault(where[-1], {}).setdefault(kind, set()).add(str(t.dtype).replace("torch.", ""))
            return out

    def enter(name: str) -> Callable:
        def hook(module, args) -> None:
            where.append(name)

        return hook

    def leave(module, args, output) -> None:  # returns None: the output is left as it is
        where.pop()

    hooks = []
    for n in PARTS:
        mod = getattr(model, n, None)
        if mod is not None:
            hooks += [mod.register_forward_pre_hook(enter(n)), mod.register_forward_hook(leave)]
    try:
        with torch.no_grad(), Audit():
            case.forward_only()
    finally:
        for h in hooks:
            h.remove()
    return {part: {k: sorted(v) for k, v in sorted(ops.items())} for part, ops in seen.items()}


def mfu_ceiling(mfu: float, matmul_share: float) -> float:
    """The MFU of a step whose matmuls took no time and whose other operators took what they take now: the bound
    that no faster matmul lifts (``matmul_share``: the matmuls' share of the step's operator time)."""
    if not 0 <= matmul_share < 1:
        raise ValueError(f"matmul share {matmul_share} is not in [0, 1)")
    return mfu / (1.0 - matmul_share)


def matmul_units() -> dict[str, Any]:
    """What multiplies here: the CPU's bf16 matmul flags (Linux /proc/cpuinfo; None where unknown), the oneDNN ISA cap
    (``ONEDNN_MAX_CPU_ISA``, None = the best the CPU has) and torch's CPU capability."""
    flags: set[str] | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {
        "amx_bf16": None if flags is None else "amx_bf16" in flags,
        "avx512_bf16": None if flags is None else "avx512_bf16" in flags,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def spread(v: list[float], nd: int = 4) -> dict[str, float]:
    return {"median": round(statistics.median(v), nd), "min": round(min(v), nd), "max": round(max(v), nd)}


# ---------------------------------------------------------------------------------------------------- the fits
def fit_ratio(
    dataset: str, root: Path, overrides: list[str], threads: int, epochs: int | None = None
) -> dict[str, Any]:
    from stvfm.baselines.run import BaselinesConfig
    from stvfm.config import load_params, with_overrides

    try:
        from stvfm.studies.quality import fit_and_score
    except ImportError:  # before the issue-21 layout
        from stvfm.training.quality import fit_and_score
    p = load_params(root / "params.yaml", ["profile=real", *overrides])
    plain = load_params(root / "params.yaml", ["profile=real"])  # the baseline's recipe, without the --set overrides
    stid = BaselinesConfig.from_params(plain.baselines).stid_params(plain, plain.train.seed)
    if epochs:  # smoke runs only: both recipes cut short
        p, stid = (with_overrides(q, {"train.epochs": epochs}) for q in (p, stid))
    res: dict[str, Any] = {}
    for name, params in (("stvfm", p), ("stid", stid)):
        load = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        r = fit_and_score(params, dataset, root, test=False, threads=threads)
        res[name] = {
            "fit_s": round(time.perf_counter() - t, 1),
            "fit_cpu_s": round(time.process_time() - c, 1),
            "val": r["val"],
            "best_epoch": r["best_epoch"],
            "epochs_run": r["epochs_run"],
            "epoch_s": r["epoch_s"],
            "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
        log(f"fit {name}: {res[name]}")
    res["ratio"] = round(res["stvfm"]["fit_s"] / res["stid"]["fit_s"], 3)
    res["cpu_ratio"] = round(res["stvfm"]["fit_cpu_s"] / max(res["stid"]["fit_cpu_s"], 1e-9), 3)
    return res


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (pinned; default 2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (medians over rounds)")
    ap.add_argument("--steps", type=int, default=3, help="train steps per case and round (median)")
    ap.add_argument("--dataset", default=None, help="default bikenyc2_test (synthetic with --quick)")
    ap.add_argument(
        "--root",
        type=Path,
        default=None,
        help="a project where the dataset's data stages ran (default: a temporary one)",
    )
    ap.add_argument("--paper-batch", type=int, default=16)
    ap.add_argument("--no-paper", action="store_true", help="skip the paper architecture (slow on CPU)")
    ap.add_argument("--fit", action="store_true", help="also time the converged real fit vs STID (~15 min)")
    ap.add_argument("--fit-threads", type=int, default=None, help="threads of each fit (default --threads)")
    ap.add_argument("--fit-epochs", type=int, default=None, help="cap both fits at this many epochs (smoke runs)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, seconds")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override for the real case and its fit (after profile=real; not the STID baseline), "
        "e.g. train.compile=true",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("stvfm").setLevel(logging.ERROR)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads_before)


def run(args: argparse.Namespace) -> int:
    dataset = args.dataset or ("synthetic" if args.quick else "bikenyc2_test")
    rounds, steps = (2, 1) if args.quick else (args.rounds, args.steps)
    sizes = (256, 512) if args.quick else (1024, 2048)
    t_start = time.perf_counter()
    load_start = os.getloadavg()

    from stvfm.config import load_params

    with contextlib.ExitStack() as stack:
        root = args.root
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-train-")))
            make_project(root, dataset, 4 if args.quick else None)
        real_p = load_params(root / "params.yaml", ["profile=real", *args.overrides])
        cases = [build_case("real", real_p, dataset, root, 2 if args.quick else real_p.train.batch_size)]
        if not args.no_paper:
            extra = ["model.allow_random_init=true", "model.weights=null"]
            if args.quick:
                extra.append("model.vfm_blocks=1")
            pb = 1 if args.quick else args.paper_batch
            for name, bf16 in (("paper_bf16", "true"), ("paper_fp32", "false"))[: 1 if args.quick else 2]:
                pp = load_params(root / "params.yaml", ["profile=paper", *extra, f"model.bf16={bf16}"])
                cases.append(build_case(name, pp, dataset, root, pb))
        from stvfm.baselines.run import BaselinesConfig

        stid_p = BaselinesConfig.from_params(real_p.baselines).stid_params(real_p, real_p.train.seed)
        cases.append(build_case("stid", stid_p, dataset, root, 2 if args.quick else stid_p.train.batch_size))

        for c in cases:  # warm-up (allocator, oneDNN primitives) and FLOPs of one step
            c.step()
            c.step()
            c.flops = step_flops(c)
        mm: dict = {}
        peaks: dict[str, list[float]] = {"bf16": [], "fp32": []}
        for r in range(rounds):  # interleaved: load changes on a shared machine hit every case alike
            peaks["bf16"].append(matmul_gflops(torch.bfloat16, sizes, mm))
            peaks["fp32"].append(matmul_gflops(torch.float32, sizes, mm))
            for c in cases:
                ts, cs = [], []
                for _ in range(steps):
                    t, p = time.perf_counter(), time.process_time()
                    c.step()
                    ts.append(time.perf_counter() - t)
                    cs.append(time.process_time() - p)
                c.times.append(statistics.median(ts))
                c.cpu.append(statistics.median(cs))
            log(
                f"round {r + 1}/{rounds}: peak bf16 {peaks['bf16'][-1]:.0f} fp32 {peaks['fp32'][-1]:.0f} GFLOP/s; "
                + ", ".join(f"{c.name} {1000 * c.times[-1]:.0f} ms" for c in cases)
                + f"; load {os.getloadavg()[0]:.2f}"
            )
        del mm

        out: dict[str, Any] = {
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "dataset": dataset,
            "quick": args.quick,
            "rounds": rounds,
            "steps_per_round": steps,
            "load_start": [round(v, 2) for v in load_start],
            "peak_bf16_gflops": round(statistics.median(peaks["bf16"]), 1),
            "peak_fp32_gflops": round(statistics.median(peaks["fp32"]), 1),
            "peak_bf16_gflops_spread": spread(peaks["bf16"], 1),
            "peak_fp32_gflops_spread": spread(peaks["fp32"], 1),
            "bf16_matmul_speedup": round(statistics.median(peaks["bf16"]) / statistics.median(peaks["fp32"]), 3),
            "matmul_units": matmul_units(),
            "cases": {},
        }
        for c in cases:
            ach = [c.flops / t / 1e9 for t in c.times]
            mfu_bf16 = [a / p for a, p in zip(ach, peaks["bf16"], strict=True)]
            mfu_fp32 = [a / p for a, p in zip(ach, peaks["fp32"], strict=True)]
            m = c.trainer.model
            out["cases"][c.name] = {
                "batch": int(c.batch[0].shape[0]),
                "bf16": c.bf16,
                "gflop_per_step": round(c.flops / 1e9, 2),
                "step_s": spread(c.times),
                "step_cpu_s": spread(c.cpu),
                "achieved_gflops": spread(ach, 1),
                "mfu_bf16": spread(mfu_bf16, 3),
                "mfu_fp32": spread(mfu_fp32, 3),
                "params_trainable": sum(q.numel() for q in m.parameters() if q.requires_grad),
            }
            out[f"{c.name}_mfu_bf16"] = round(statistics.median(mfu_bf16), 3)
            out[f"{c.name}_step_s"] = round(statistics.median(c.times), 4)
        for c in cases:
            if c.name in ("real", "paper_bf16"):
                out["cases"][c.name]["modules"] = module_shares(c, 1 if args.quick else 5)
        for c in cases:
            if c.name in ("real", "paper_bf16"):
                ops = out["cases"][c.name]["ops"] = op_profile(c, 1 if args.quick else 3)
                ceiling = mfu_ceiling(out[f"{c.name}_mfu_bf16"], ops["matmul_share"])
                out[f"{c.name}_mfu_bf16_ceiling"] = round(ceiling, 3)
        for c in cases:
            if c.name in ("real", "paper_bf16"):
                out["cases"][c.name]["dtypes"] = dtype_audit(c)
        out["load_end"] = [round(v, 2) for v in os.getloadavg()]
        out["fit"] = None
        if args.fit:
            out["fit"] = fit_ratio(dataset, root, args.overrides, args.fit_threads or args.threads, args.fit_epochs)
    out["fit_ratio_stvfm_stid"] = out["fit"]["ratio"] if out["fit"] else None
    out["ratio"] = out["fit_ratio_stvfm_stid"]
    out["wall_s"] = round(time.perf_counter() - t_start, 1)

    print(
        f"threads {out['threads']}, load {out['load_start'][0]} -> {out['load_end'][0]}; matmul peak bf16 "
        f"{out['peak_bf16_gflops']} GFLOP/s, fp32 {out['peak_fp32_gflops']} (median of {rounds} rounds)"
    )
    units = out["matmul_units"]
    print(
        f"matmul units: AMX {units['amx_bf16']}, AVX512-BF16 {units['avx512_bf16']}, oneDNN ISA cap "
        f"{units['onednn_max_cpu_isa'] or 'none'}; bf16 peak / fp32 peak {out['bf16_matmul_speedup']}"
        + (
            " (bf16 matmuls are SLOWER than fp32 here: model.bf16=auto trains in fp32)"
            if out["bf16_matmul_speedup"] < 1
            else ""
        )
    )
    print(
        f"{'case':11s} {'B':>3s} {'GFLOP':>7s} {'step ms':>8s} {'min-max':>11s} {'GFLOP/s':>8s} {'of bf16':>7s} "
        f"{'of fp32':>7s}"
    )
    for k, v in out["cases"].items():
        print(
            f"{k:11s} {v['batch']:3d} {v['gflop_per_step']:7.2f} {1000 * v['step_s']['median']:8.1f} "
            f"{1000 * v['step_s']['min']:5.0f}-{1000 * v['step_s']['max']:<5.0f} "
            f"{v['achieved_gflops']['median']:8.1f} "
            f"{100 * v['mfu_bf16']['median']:6.1f}% {100 * v['mfu_fp32']['median']:6.1f}%"
        )
    for k in ("real", "paper_bf16"):
        case = out["cases"].get(k, {})
        if "modules" in case:
            print(f"{k}: module (fwd+bwd alone)      ms   share  GFLOP  FLOP share  GFLOP/s")
            for n, r in case["modules"].items():
                print(
                    f"  {n:30s} {r['ms']:7.1f} {100 * r['share']:5.1f}% {r['gflop']:6.2f} "
                    f"{100 * r['flop_share']:6.1f}% {r['gflops']:8.1f}"
                )
            print(f"{k}: dtypes in one forward (part: op dtype ...)")
            for part, ops in case["dtypes"].items():
                print(f"  {part:12s} " + ", ".join(f"{op} {'/'.join(d)}" for op, d in ops.items()))
    for k in ("real", "paper_bf16"):
        if "ops" not in out["cases"].get(k, {}):
            continue
        ops = out["cases"][k]["ops"]
        print(
            f"{k}: matmul ops {100 * ops['matmul_share']:.1f}% of operator time, {ops['ops_per_step']} aten ops a "
            f"step; MFU (bf16) {100 * out[f'{k}_mfu_bf16']:.1f}%, ceiling with free matmuls "
            f"{100 * out[f'{k}_mfu_bf16_ceiling']:.1f}%; top: "
            + ", ".join(f"{n} {100 * v['share']:.1f}%" for n, v in list(ops["top"].items())[:8])
        )
    if out["fit"]:
        f = out["fit"]
        print(
            f"fit: ST-VFM {f['stvfm']['fit_s']} s (val {f['stvfm']['val']}), STID {f['stid']['fit_s']} s "
            f"(val {f['stid']['val']}): ratio {f['ratio']}"
        )
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
