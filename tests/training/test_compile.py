"""``train.compile``: the compiled train step of a small ST-VFM (variant full: token adapters, VFM with adapters,
cross-prompt, decoders; bf16) against the eager one with the same weights, and shapes fixed per epoch (a short last
batch runs eagerly, never recompiles). Compiling takes a minute or two on a 2-core box: slow.

Tolerance (bf16): the loss within 0.5 %, the gradient as one vector within 3 % of eager bf16's, and every parameter's
gradient as close to the fp32 gradient as eager bf16's is (x1.5 + 2 % slack). Compiled kernels keep bf16 products in
fp32 inside a fused kernel where eager rounds each op's output, so compiled is often the closer of the two to fp32:
it is held to fp32, not to eager's rounding (docs/training.md, "Compiled step").
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from stvfm.config import ModelConfig, TrainConfig
from stvfm.models.factory import build_model
from stvfm.training.loop import LoopTrainer

from tiny_city import TINY_MODEL

pytestmark = pytest.mark.slow

GRID, B = (6, 8), 4


def small_model():
    # the paper's head (no clock, no identity path): the smallest graph with every part of Section 3, so the cold
    # compile stays short
    cfg = ModelConfig(**TINY_MODEL, prompt_layers=1, bf16=True)
    torch.manual_seed(0)
    m, _ = build_model(cfg, GRID, 2)
    return m


def batch(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(12).float()
    wave = torch.sin(t / 2.0).view(1, 12, 1, 1, 1) + 0.1 * torch.randn(n, 12, 2, *GRID, generator=g)
    x, y = wave[:, :6], wave[:, 6:]
    xf = torch.diff(wave[:, :7], dim=1)
    yf = torch.diff(wave[:, 5:], dim=1)
    tid = torch.stack([torch.arange(12).expand(n, 12) % 48, torch.full((n, 12), 2)], -1)
    return x, xf, y, yf, tid


def mse_loss(out, y, yf):
    loss = (out.st.float() - y).pow(2).mean() + 0.5 * (out.flow.float() - yf).pow(2).mean()
    return loss, {}


def grads(model, bf16, data):
    model.zero_grad(set_to_none=True)
    x, xf, y, yf, tid = data
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x, xf, time_ids=tid)
    loss, _ = mse_loss(out, y, yf)
    loss.backward()
    return float(loss.detach()), {
        n.replace("_orig_mod.", ""): p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture
def compile_cache(tmp_path, monkeypatch):
    """The project's cache (STVFM_COMPILE_CACHE) while torch's variable already names another place, as it does once
    timm is imported (torch's temporary default): the compiled kernels must land in the project's."""
    monkeypatch.setenv("STVFM_COMPILE_CACHE", str(tmp_path / "stvfm-cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch-default"))
    torch._dynamo.reset()
    yield tmp_path / "stvfm-cache"
    torch._dynamo.reset()


def test_compiled_step_matches_eager_and_never_recompiles_for_a_short_batch(compile_cache):
    from torch._dynamo.utils import counters

    torch.set_num_threads(1)
    model = small_model()
    model.train()
    full, short = batch(B), batch(B - 1, seed=2)
    m32 = copy.deepcopy(model)
    m32.bf16 = False
    l32, g32 = grads(m32, False, full)
    l16, g16 = grads(model, True, full)

    cfg = dataclasses.replace(TrainConfig(), compile=True, grad_clip=0.0, lr=0.0, weight_decay=0.0, epochs=1)
    tr = LoopTrainer(model, [None], [None], cfg, loss_fn=mse_loss, inverse=lambda t: t, bf16=True)
    tr._full_batch = B
    assert tr.compiled is not None and tr.compiled is not model
    lc, gc = grads(tr.compiled, True, full)
    assert lc == pytest.approx(l16, rel=5e-3) and lc == pytest.approx(l32, rel=5e-3)
    flat = [torch.cat([g[n].flatten() for n in sorted(g32)]) for g in (gc, g16, g32)]
    assert rel(flat[0], flat[1]) < 0.03
    assert gc.keys() == g16.keys() == g32.keys()
    for n in g32:
        if g32[n].norm() > 0:
            assert rel(gc[n], g32[n]) <= 1.5 * rel(g16[n], g32[n]) + 0.02, n

    # shapes fixed per epoch: full batches through the compiled model, the short one eagerly, no new graph
    graphs = counters["stats"]["unique_graphs"]
    frames = counters["stats"]["calls_captured"]
    for data in (full, short, full):
        tr.train_step(*data)
    assert counters["stats"]["unique_graphs"] == graphs
    assert counters["stats"]["calls_captured"] == frames
    assert any(p.is_file() for p in compile_cache.rglob("*")), "nothing written to the persistent cache"
    assert not any(p.is_file() for p in (compile_cache.parent / "torch-default").rglob("*"))
