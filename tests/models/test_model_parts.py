"""Unit tests of the parts of Section 3: tokenizer, positional embedding, adapters, cross-prompt, loss."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stvfm.errors import ConfigError
from stvfm.models.adapter import AdaptedBlock, HoulsbyAdapter, add_adapters
from stvfm.models.backbone import build_backbone
from stvfm.models.cross_prompt import BilateralCrossPrompt, CrossPromptAttention, CrossPromptBlock, PromptExtractor
from stvfm.models.loss import stvfm_loss
from stvfm.models.output import ModelOutput
from stvfm.models.pos_embed import LearnablePosEmbed
from stvfm.models.tokenizer import PatchTokenizer

from .conftest import TINY


@pytest.mark.parametrize(("grid", "p"), [((16, 8), 2), ((10, 20), 3), ((7, 5), 2), ((4, 4), 4), ((5, 3), 1)])
def test_tokenizer_roundtrip_and_layout(grid, p):
    c = 2
    tok = PatchTokenizer(grid, c, p)
    x = torch.randn(2, 3, c, *grid)
    t = tok(x)
    assert t.shape == (2, 3, math.ceil(grid[0] / p) * math.ceil(grid[1] / p), p * p * c)
    # first token = top-left patch, flattened (row, col, channel)
    assert torch.equal(t[0, 0, 0], x[0, 0, :, :p, :p].permute(1, 2, 0).reshape(-1))
    # second token = next patch to the right
    if grid[1] >= 2 * p:
        assert torch.equal(t[1, 2, 1], x[1, 2, :, :p, p : 2 * p].permute(1, 2, 0).reshape(-1))
    assert torch.equal(tok.unpatchify(t), x)


def test_tokenizer_pads_by_replication():
    tok = PatchTokenizer((3, 3), 1, 2)  # padded to 4×4
    x = torch.arange(9.0).reshape(1, 1, 1, 3, 3)
    t = tok(x)
    # bottom-right patch covers (2..3, 2..3): only x[2,2]=8 is real, the rest replicate it
    assert torch.equal(t[0, 0, 3], torch.full((4,), 8.0))
    assert tok.unpatchify(t).shape == (1, 1, 1, 3, 3)


@pytest.mark.parametrize(("grid", "p"), [((16, 8), 9), ((16, 8), 0), ((10, 20), 11)])
def test_patch_size_that_cannot_tile_is_a_config_error(grid, p):
    with pytest.raises(ConfigError, match=r"model.patch_size.*set model.patch_size to 1\.\."):
        PatchTokenizer(grid, 1, p)


def test_pos_embed_broadcast_over_time():
    pe = LearnablePosEmbed(5, 8)
    z = torch.zeros(2, 3, 5, 8)
    out = pe(z)
    for t in range(3):
        assert torch.equal(out[1, t], pe.pos.detach())
    assert pe.pos.std() > 0


def test_houlsby_adapter_starts_as_identity():
    a = HoulsbyAdapter(16, 4)
    h = torch.randn(3, 5, 16)
    assert torch.equal(a(h), h)


def test_adapted_vfm_equals_frozen_vfm_at_init():
    torch.manual_seed(0)
    vfm, _ = build_backbone(TINY, allow_random_init=True)
    adapted = copy.deepcopy(vfm)
    add_adapters(adapted, 4)
    assert all(isinstance(b, AdaptedBlock) for b in adapted.blocks)
    x = torch.randn(6, 10, 32)
    assert torch.equal(vfm(x), adapted(x))
    # and it stops being the identity once the up-projection moves
    with torch.no_grad():
        adapted.blocks[0].adapter.up.weight.add_(0.1)
    assert not torch.allclose(vfm(x), adapted(x))


def _reference_attention(x, attn: CrossPromptAttention, prompts=None):
    """Eq. 10 written out: softmax over own keys and prompt keys, per head, explicit exp/sum."""
    b, n, d = x.shape
    h = attn.heads
    dh = d // h
    q, k, v = attn.qkv(x).chunk(3, -1)
    if prompts is not None and prompts.shape[1]:
        kp, vp = attn.prompt_kv(prompts).chunk(2, -1)
        k, v = torch.cat([k, kp], 1), torch.cat([v, vp], 1)
    q, k, v = (t.reshape(b, -1, h, dh).transpose(1, 2).double() for t in (q, k, v))
    s = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(dh))
    a = s / s.sum(-1, keepdim=True)
    o = (a @ v).transpose(1, 2).reshape(b, n, d).float()
    return attn.proj(o)


def test_cross_prompt_with_no_prompts_is_plain_self_attention():
    torch.manual_seed(0)
    attn = CrossPromptAttention(16, 2)
    x = torch.randn(4, 7, 16)
    empty = torch.zeros(4, 0, 16)
    out = attn(x, empty)
    assert torch.equal(out, attn(x, None))
    # identical to PyTorch's own multi-head self-attention with the same weights
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    ref, _ = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, _reference_attention(x, attn), rtol=1e-5, atol=1e-6)


def test_cross_prompt_attention_matches_eq10():
    torch.manual_seed(1)
    attn = CrossPromptAttention(16, 4)
    x, prompts = torch.randn(3, 5, 16), torch.randn(3, 2, 16)
    torch.testing.assert_close(attn(x, prompts), _reference_attention(x, attn, prompts), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(attn(x, prompts), attn(x, None))


def test_bilateral_block_with_lp0_equals_self_attention_blocks():
    torch.manual_seed(2)
    cp = BilateralCrossPrompt(16, 1, 2, num_prompts=0)
    h_st, h_fl = torch.randn(2, 3, 5, 16), torch.randn(2, 3, 5, 16)
    o_st, o_fl = cp(h_st, h_fl)
    blk: CrossPromptBlock = cp.st_blocks[0]
    x = h_st.reshape(6, 5, 16)
    ref = x + blk.attn(blk.norm1(x), None)
    ref = ref + blk.mlp(blk.norm2(ref))
    torch.testing.assert_close(o_st, ref.reshape(2, 3, 5, 16), rtol=0, atol=0)
    # the flow branch is unaffected by the ST branch when L_p = 0
    o_fl2 = cp(torch.randn_like(h_st), h_fl)[1]
    torch.testing.assert_close(o_fl, o_fl2, rtol=0, atol=0)


def test_prompts_carry_the_other_branch():
    torch.manual_seed(3)
    cp = BilateralCrossPrompt(16, 2, 2, num_prompts=3)
    h_st, h_fl = torch.randn(2, 3, 5, 16), torch.randn(2, 3, 5, 16)
    a = cp(h_st, h_fl)[0]
    b = cp(h_st, torch.randn_like(h_fl))[0]  # change only the flow branch
    assert not torch.allclose(a, b)
    ext = PromptExtractor(16, 3, 2)
    assert ext(torch.randn(2, 15, 16)).shape == (2, 3, 16)


def test_loss_is_eq11():
    y, yf = torch.randn(2, 6, 2, 4, 4), torch.randn(2, 6, 2, 4, 4)
    st, fl = torch.randn_like(y), torch.randn_like(y)
    loss, parts = stvfm_loss(ModelOutput(st, fl), y, yf, 0.3)
    torch.testing.assert_close(loss, F.mse_loss(st, y) + 0.3 * F.mse_loss(fl, yf))
    torch.testing.assert_close(parts["st"], F.mse_loss(st, y))
    torch.testing.assert_close(parts["flow"], F.mse_loss(fl, yf))
    loss2, parts2 = stvfm_loss(ModelOutput(st, None), y, None, 0.3)
    torch.testing.assert_close(loss2, F.mse_loss(st, y))
    assert parts2["flow"] is None


@pytest.mark.parametrize("kind", ["mse", "mae"])
def test_loss_kinds_match_numpy(kind):
    """train.loss: the pointwise error changes, Eq. 11's structure L_st + λ L_flow does not."""
    g = torch.Generator().manual_seed(0)
    y, yf, st, fl = (torch.randn(3, 6, 2, 4, 5, generator=g) for _ in range(4))
    err = (lambda a, b: np.mean((a - b) ** 2)) if kind == "mse" else (lambda a, b: np.mean(np.abs(a - b)))
    want_st, want_fl = err(st.numpy(), y.numpy()), err(fl.numpy(), yf.numpy())
    loss, parts = stvfm_loss(ModelOutput(st, fl), y, yf, 0.7, kind)
    assert float(loss) == pytest.approx(want_st + 0.7 * want_fl, rel=1e-5)
    assert float(parts["st"]) == pytest.approx(want_st, rel=1e-5)
    assert float(parts["flow"]) == pytest.approx(want_fl, rel=1e-5)
    assert float(stvfm_loss(ModelOutput(st, None), y, None, 0.7, kind)[0]) == pytest.approx(want_st, rel=1e-5)
    with pytest.raises(ValueError, match="huber"):
        stvfm_loss(ModelOutput(st, fl), y, yf, 0.7, "huber")
