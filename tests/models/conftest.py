"""Tiny ST-VFM configs and a tiny DINOv2-style backbone for the model tests (no network, milliseconds per forward)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stvfm.config import ModelConfig
from stvfm.models import backbone as bb

TINY = "test_tiny_dinov2"
# timm's own DINOv2 ViT-S/14 architecture, shrunk: embed 32, depth 2, heads 2, 28 px (2×2 patches of 14)
TINY_SPEC = bb.BackboneSpec(
    TINY,
    "vit_small_patch14_dinov2",
    32,
    2,
    "tiny DINOv2-style test ViT",
    timm_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 28},
)


@pytest.fixture(autouse=True)
def tiny_backbone():
    bb.register_backbone(TINY_SPEC)
    yield TINY_SPEC
    bb.BACKBONES.pop(TINY, None)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy shared box OpenMP spin-waiting makes 2 threads
    10-20x slower than 1. Restored afterwards for the rest of the session."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(
        variant="full",
        backbone=TINY,
        allow_random_init=True,
        patch_size=2,
        d_temporal=16,
        heads=2,
        temporal_layers=1,
        decoder_layers=1,
        prompt_layers=1,
        prompt_tokens=2,
        adapter_dim=4,
    )
    base.update(kw)
    return ModelConfig(**base)


def official_dinov2_state(spec: bb.BackboneSpec = TINY_SPEC, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the official facebookresearch/dinov2 key layout (as in dinov2_vits14_pretrain.pth)."""
    g = torch.Generator().manual_seed(seed)
    d, depth = spec.embed_dim, spec.depth
    n = (spec.timm_kwargs["img_size"] // 14) ** 2

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = {
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, 1 + n, d),
        "mask_token": r(1, d),
        "patch_embed.proj.weight": r(d, 3, 14, 14),
        "patch_embed.proj.bias": r(d),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update(
            {
                p + "norm1.weight": r(d),
                p + "norm1.bias": r(d),
                p + "attn.qkv.weight": r(3 * d, d),
                p + "attn.qkv.bias": r(3 * d),
                p + "attn.proj.weight": r(d, d),
                p + "attn.proj.bias": r(d),
                p + "ls1.gamma": r(d),
                p + "norm2.weight": r(d),
                p + "norm2.bias": r(d),
                p + "mlp.fc1.weight": r(4 * d, d),
                p + "mlp.fc1.bias": r(4 * d),
                p + "mlp.fc2.weight": r(d, 4 * d),
                p + "mlp.fc2.bias": r(d),
                p + "ls2.gamma": r(d),
            }
        )
    sd.update({"norm.weight": r(d), "norm.bias": r(d)})
    return sd


def replace(cfg: ModelConfig, **kw) -> ModelConfig:
    return dataclasses.replace(cfg, **kw)
