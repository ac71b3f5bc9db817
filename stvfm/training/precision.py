"""``model.bf16: auto``: bf16 autocast where this machine multiplies bf16 faster than fp32, fp32 where it does not.

bf16 autocast pays for its casts only through faster matmuls. Measured (docs/training.md "Which matmul unit"):
on an Intel Xeon with AMX, bf16 matmuls run ~5x fp32 and the `real` step is 1.31x faster in bf16; the same machine
with AMX masked (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``, i.e. a CPU with AVX512-BF16 but no AMX) multiplies bf16 at
0.6x fp32 and the step is 1.33x *slower* in bf16 (the paper architecture 1.2x slower); without any bf16 unit
(``AVX512_CORE``) bf16 matmuls run at 0.2x fp32. So ``auto`` measures: on CUDA bf16 where the GPU supports it
natively; on CPU a short bf16-vs-fp32 matmul at the VFM's shapes (0.1-0.3 s on 2 cores), bf16 from
:data:`MIN_SPEEDUP` on. The choice is made once per training run, before the model is built, and the checkpoint,
the model version and the logs carry the resolved true/false, never ``auto``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

MIN_SPEEDUP = 1.5  # bf16 matmul ÷ fp32 matmul throughput from which bf16 autocast is chosen on CPU
SHAPE = (2048, 384, 1152)  # (rows, in, out): a ViT-S block's qkv projection over a batch of tokens


@dataclass(frozen=True)
class Bf16Choice:
    enabled: bool
    reason: str  # one line for the logs: what was set or measured


def matmul_speedup(shape: tuple[int, int, int] = SHAPE, reps: int = 3) -> float:
    """bf16 ÷ fp32 throughput of ``(rows × in) @ (in × out)`` on this CPU with torch's current threads (best of
    ``reps``)."""
    m, k, n = shape
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        x @ y  # warm-up (oneDNN primitive creation)
        out = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            x @ y
            out = min(out, time.perf_counter() - t)
        return out

    return best(a, b) / best(a.bfloat16(), b.bfloat16())


@functools.cache
def _measured_cpu(threads: int) -> float:
    return matmul_speedup()


def resolve_bf16(setting: bool | str, device: str | torch.device = "cpu") -> Bf16Choice:
    """``model.bf16`` (true, false or "auto") -> whether this run trains under bf16 autocast, and why."""
    if isinstance(setting, bool):
        return Bf16Choice(setting, f"model.bf16={str(setting).lower()}")
    if setting != "auto":
        raise ValueError(f"model.bf16: {setting!r} is neither true/false nor 'auto'")
    dev = torch.device(device)
    if dev.type == "cuda":
        ok = torch.cuda.is_bf16_supported(including_emulation=False)
        return Bf16Choice(ok, f"model.bf16=auto: {'bf16' if ok else 'fp32'} (this GPU {'has' if ok else 'lacks'} bf16)")
    if dev.type != "cpu":
        return Bf16Choice(False, f"model.bf16=auto: fp32 (no bf16 measurement for device '{dev.type}')")
    speedup = _measured_cpu(torch.get_num_threads())
    on = speedup >= MIN_SPEEDUP
    what = "bf16 autocast" if on else "fp32, no autocast"
    return Bf16Choice(
        on, f"model.bf16=auto: {what} (a bf16 matmul runs {speedup:.2f}x fp32 on this CPU; bf16 from {MIN_SPEEDUP}x)"
    )
