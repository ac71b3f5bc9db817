"""ST-VFM assembled: shapes for every dataset grid × variant, frozen VFM, gradients, training, errors."""

from __future__ import annotations

import logging

import pytest
import torch

from stvfm.errors import ConfigError, DataError
from stvfm.models.adapter import AdaptedBlock
from stvfm.models.factory import build_model
from stvfm.models.loss import stvfm_loss
from stvfm.models.stvfm import STVFM, count_parameters

from .conftest import tiny_cfg

VARIANTS = ["simple", "token", "temporal", "adapter", "full"]
GRIDS = [(16, 20), (32, 32), (16, 8), (10, 20), (16, 12), (20, 10), (26, 26), (24, 30), (28, 32)]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_output_shapes_every_grid_and_variant(grid):
    for i, variant in enumerate(VARIANTS):
        c = 1 + (i + grid[0]) % 2  # both 1 and 2 channels across the grid
        model, _ = build_model(tiny_cfg(variant=variant), grid, c)
        x = torch.randn(2, 6, c, *grid)
        out = model(x, torch.randn_like(x))
        assert out.st.shape == (2, 6, c, *grid) and out.st.dtype == torch.float32
        if variant == "full":
            assert out.flow is not None and out.flow.shape == (2, 6, c, *grid)
        else:
            assert out.flow is None
        assert torch.isfinite(out.st).all()


def test_history_horizon_other_than_six():
    model, _ = build_model(tiny_cfg(), (8, 8), 1, history=4, horizon=3)
    x = torch.randn(2, 4, 1, 8, 8)
    out = model(x, x)
    assert out.st.shape == (2, 3, 1, 8, 8) and out.flow.shape == (2, 3, 1, 8, 8)


def test_variants_contain_exactly_their_components():
    parts = {}
    for v in VARIANTS:
        m, _ = build_model(tiny_cfg(variant=v), (8, 8), 1)
        parts[v] = dict(
            temporal=m.st_in.encoder is not None and m.st_in.encoder.temporal is not None,
            adapters=isinstance(m.vfm.blocks[0], AdaptedBlock),
            flow=m.flow_in is not None,
            cross=m.cross is not None,
            mlp=m.st_head is None,
        )
    assert parts["simple"] == dict(temporal=False, adapters=False, flow=False, cross=False, mlp=True)
    assert parts["token"] == dict(temporal=False, adapters=False, flow=False, cross=False, mlp=False)
    assert parts["temporal"] == dict(temporal=True, adapters=False, flow=False, cross=False, mlp=False)
    assert parts["adapter"] == dict(temporal=True, adapters=True, flow=False, cross=False, mlp=False)
    assert parts["full"] == dict(temporal=True, adapters=True, flow=True, cross=True, mlp=False)
    m, _ = build_model(tiny_cfg(prompt_layers=0), (8, 8), 1)
    assert m.cross is None and m.flow_in is not None
    m, _ = build_model(tiny_cfg(prompt_layers=None), (8, 8), 1)
    assert m.cross.layers == 2  # None -> 2 (the paper's default)


def test_vfm_runs_once_for_both_branches_with_time_in_batch():
    model, _ = build_model(tiny_cfg(), (8, 6), 2)
    calls = []
    model.vfm.register_forward_hook(lambda mod, inp, out: calls.append(tuple(inp[0].shape)))
    x = torch.randn(3, 6, 2, 8, 6)
    model(x, x)
    assert calls == [(2 * 3 * 6, 12, 32)]  # (branches·B·T, N_s, D_VFM)


def _trainables(model):
    return [p for p in model.parameters() if p.requires_grad]


def test_frozen_vfm_no_grad_bit_identical_and_eval():
    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(), (8, 6), 2)
    frozen = {n: p.detach().clone() for n, p in model.vfm.named_parameters() if ".adapter." not in n}
    assert frozen and all(not p.requires_grad for n, p in model.vfm.named_parameters() if ".adapter." not in n)
    model.train()
    assert not model.vfm.blocks[0].block.training and not model.vfm.norm.training
    assert model.vfm.blocks[0].adapter.training and model.st_dec.training
    # an optimizer that is (wrongly) handed every parameter must still leave the VFM alone
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x = torch.randn(2, 6, 2, 8, 6)
    for _ in range(2):
        loss, _ = stvfm_loss(model(x, x), x, x, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.vfm.named_parameters():
        if ".adapter." not in n:
            assert p.grad is None, n
            assert torch.equal(p, frozen[n]), n
    model.eval()
    assert not model.vfm.blocks[0].adapter.training


def test_trainable_parts_receive_gradients():
    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(), (8, 6), 2)
    x = torch.randn(2, 6, 2, 8, 6)
    loss, _ = stvfm_loss(model(x, x), x, x, 0.5)
    loss.backward()
    must = {
        "st tokenizer projection (Eq. 5)": model.st_in.encoder.proj.weight,
        "flow tokenizer projection": model.flow_in.encoder.proj.weight,
        "temporal encoder": model.st_in.encoder.temporal.layers[0].mlp[0].weight,
        "token adaptation (Eq. 7)": model.st_in.adapt.linear.weight,
        "pos-emb st (Eq. 8)": model.st_in.pos.pos,
        "pos-emb flow": model.flow_in.pos.pos,
        "adapter up (zero-init)": model.vfm.blocks[0].adapter.up.weight,
        "prompt queries ST": model.cross.st_prompts[0].queries,
        "prompt queries flow": model.cross.flow_prompts[0].queries,
        "prompt K/V": model.cross.st_blocks[0].attn.prompt_kv.weight,
        "st decoder": model.st_dec.head.weight,
        "flow decoder": model.flow_dec.head.weight,
    }
    for name, p in must.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # every trainable parameter is reached (adapter down-projections get grads once `up` is non-zero)
    with torch.no_grad():
        for b in model.vfm.blocks:
            b.adapter.up.weight.normal_(0, 0.01)
    model.zero_grad()
    stvfm_loss(model(x, x), x, x, 0.5)[0].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_few_steps_lower_the_loss(variant):
    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(variant=variant), (8, 6), 2)
    t = torch.arange(12.0).reshape(1, 12, 1, 1, 1)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(6.0), indexing="ij")
    phase = torch.stack([torch.rand(4) * 6 for _ in range(2)], 1).reshape(4, 1, 2, 1, 1)
    series = torch.sin(0.5 * t + phase + 0.3 * yy + 0.2 * xx)  # (4, 12, 2, 8, 6)
    flow = torch.diff(series, dim=1, prepend=series[:, :1])
    x, y, xf, yf = series[:, :6], series[:, 6:], flow[:, :6], flow[:, 6:]
    opt = torch.optim.AdamW(_trainables(model), lr=5e-3)
    losses = []
    for _ in range(8):
        loss, _ = stvfm_loss(model(x, xf), y, yf, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_bf16_autocast_runs_and_returns_fp32():
    model, _ = build_model(tiny_cfg(bf16=True), (8, 6), 2)
    x = torch.randn(2, 6, 2, 8, 6)
    out = model(x, x)
    assert out.st.dtype == torch.float32 and out.flow.dtype == torch.float32
    loss, _ = stvfm_loss(out, x, x, 0.5)
    loss.backward()
    assert model.st_dec.head.weight.grad is not None


def test_parameter_counts_and_vfm_blocks():
    m4, info = build_model(tiny_cfg(variant="adapter", vfm_blocks=1), (8, 6), 2)
    assert len(m4.vfm.blocks) == 1 and info.blocks_used == 1
    trainable, total = count_parameters(m4)
    frozen = sum(p.numel() for p in m4.vfm.parameters() if not p.requires_grad)
    assert total - trainable == frozen > 0


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        (dict(backbone="resnet50"), ConfigError, r"model.backbone: unknown backbone 'resnet50'.*dinov2_vits14"),
        (dict(variant="fancy"), ConfigError, r"model.variant: 'fancy' is not one of"),
        (dict(arch="unet"), ConfigError, r"model.arch: 'unet'"),
        (dict(patch_size=9), ConfigError, r"model.patch_size=9 cannot tile the 8x6 grid.*1\.\.6"),
        (dict(d_temporal=15, heads=2), ConfigError, r"model.d_temporal=15 is not divisible by model.heads=2"),
        (dict(vfm_blocks=3), ConfigError, r"model.vfm_blocks: 3 is outside 1\.\.2"),
        (dict(prompt_tokens=-1), ConfigError, r"model.prompt_tokens"),
    ],
)
def test_bad_config_errors_say_what_to_change(kw, err, match):
    with pytest.raises(err, match=match):
        build_model(tiny_cfg(**kw), (8, 6), 2)


def test_wrong_input_shape_is_a_data_error():
    model, _ = build_model(tiny_cfg(), (8, 6), 2)
    with pytest.raises(DataError, match=r"built for \(B, T=6, C=2, H=8, W=6\)"):
        model(torch.randn(2, 6, 2, 8, 8), torch.randn(2, 6, 2, 8, 8))
    with pytest.raises(DataError, match="x_flow"):
        model(torch.randn(2, 6, 2, 8, 6), None)
    simple, _ = build_model(tiny_cfg(variant="adapter"), (8, 6), 2)
    assert simple(torch.randn(1, 6, 2, 8, 6)).flow is None  # no flow input needed without the flow branch


def test_stid_arch_dispatches_to_the_baseline():
    from stvfm.models.stid import STID

    model, info = build_model(tiny_cfg(arch="stid"), (8, 6), 2, interval_minutes=30)
    assert isinstance(model, STID) and info.pretrained is False and info.name == "none"
    out = model(torch.randn(2, 6, 2, 8, 6), None, time_ids=torch.zeros(2, 12, 2, dtype=torch.int64))
    assert out.st.shape == (2, 6, 2, 8, 6) and out.flow is None


def test_random_init_is_logged_and_reported(caplog, monkeypatch):
    from stvfm.models import backbone

    monkeypatch.setattr(backbone, "_WARNED_RANDOM_INIT", set())  # the warning is said once per process
    with caplog.at_level(logging.WARNING, logger="stvfm.models.backbone"):
        model, info = build_model(tiny_cfg(), (8, 6), 2)
    assert isinstance(model, STVFM)
    assert info.pretrained is False and "allow_random_init" in info.random_init_reason
    assert "RANDOMLY INITIALISED" in caplog.text
    d = info.to_dict()
    assert d["name"] == "test_tiny_dinov2" and d["embed_dim"] == 32 and d["weights_path"] is None


def test_fused_and_per_branch_vfm_calls_agree():
    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(), (8, 6), 2)
    x, xf = torch.randn(2, 6, 2, 8, 6), torch.randn(2, 6, 2, 8, 6)
    a = model(x, xf)
    model.fuse_branches = False
    b = model(x, xf)
    torch.testing.assert_close(a.st, b.st, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.flow, b.flow, rtol=1e-5, atol=1e-6)


def test_lp0_full_model_has_no_unused_trainable_parameters():
    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg(prompt_tokens=0), (8, 6), 2)
    with torch.no_grad():
        for b in model.vfm.blocks:
            b.adapter.up.weight.normal_(0, 0.01)
    x = torch.randn(2, 6, 2, 8, 6)
    stvfm_loss(model(x, x), x, x, 0.5)[0].backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
