"""Speed changes of the training loop keep the update (issue 22): the fused Adam/AdamW of make_optimizer against
torch's default for-each implementation, same parameters and gradients, five steps (fp32, rtol 1e-6 / atol 1e-7)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stvfm.config import TrainConfig
from stvfm.training.loop import make_optimizer


@pytest.mark.parametrize(("kind", "wd"), [("adam", 1e-4), ("adamw", 0.01)])
def test_fused_optimizer_is_the_foreach_update(kind, wd):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TrainConfig(), optimizer=kind, lr=2e-3, weight_decay=wd)
    shapes = [(64, 32), (32,), (7, 3, 5), (1,)]
    a = [torch.randn(s, requires_grad=True) for s in shapes]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    fused = make_optimizer(a, cfg)
    ref = (torch.optim.Adam if kind == "adam" else torch.optim.AdamW)(b, lr=2e-3, weight_decay=wd, foreach=True)
    assert fused.defaults["fused"] is True
    for step in range(5):
        grads = [torch.randn(s) * 10**-step for s in shapes]  # shrinking gradients: the second moments matter
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        ref.step()
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
