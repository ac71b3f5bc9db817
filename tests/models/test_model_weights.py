"""Backbones and weights: offline loading of an official-layout DINOv2 checkpoint, checksums, errors, CLI."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from stvfm.cli import main
from stvfm.errors import DownloadError, WeightsError
from stvfm.models import backbone as bb
from stvfm.models.factory import build_model, build_model_on_meta
from stvfm.models.stvfm import count_parameters
from stvfm.models.weights import fetch_weights, verify_file

from .conftest import TINY, TINY_SPEC, official_dinov2_state, tiny_cfg


@pytest.fixture
def ckpt(tmp_path):
    sd = official_dinov2_state()
    path = tmp_path / "tiny_dinov2_pretrain.pth"
    torch.save(sd, path)
    return path, sd


def test_timm_names_exist():
    import timm

    for spec in bb.BACKBONES.values():
        assert timm.is_model(spec.timm_name), spec.timm_name
    assert {k: (v.timm_name, v.embed_dim) for k, v in bb.BACKBONES.items() if k != TINY} == {
        "dinov2_vits14": ("vit_small_patch14_dinov2", 384),
        "clip_vitb16": ("vit_base_patch16_clip_224", 768),
        "deit_vitb16": ("deit_base_patch16_224", 768),
        "vit_tiny": ("vit_tiny_patch16_224", 192),
    }


def test_official_layout_checkpoint_loads_every_tensor(ckpt):
    path, sd = ckpt
    assert "mask_token" in sd and "blocks.0.ls1.gamma" in sd  # the official release's keys
    vit = bb.create_vit(TINY_SPEC, path)
    state = vit.state_dict()
    for k, v in state.items():
        assert torch.equal(v, sd[k]), k
    assert set(sd) - set(state) == {"mask_token"}  # the only official key timm drops (used for iBOT masking)
    # the same tensors end up in the frozen VFM that ST-VFM runs, and BackboneInfo records the file
    model, info = build_model(tiny_cfg(weights=str(path), allow_random_init=False), (8, 6), 2)
    vfm_state = model.vfm.state_dict()
    for k, v in vfm_state.items():
        if ".adapter." in k:
            continue
        src = k.replace(".block.", ".")  # AdaptedBlock wraps the timm block
        assert torch.equal(v, sd[src]), k
    assert info.pretrained and info.weights_path == str(path) and info.random_init_reason is None
    assert info.weights_sha256 == bb.sha256_file(path) and len(info.weights_sha256) == 64


def test_weights_only_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    import argparse  # any class is code to the unpickler; weights_only=True refuses it

    torch.save({"blocks.0.norm1.weight": torch.zeros(32), "x": argparse.Namespace(a=1)}, path)
    with pytest.raises(WeightsError, match=re.escape("evil.pth")):
        build_model(tiny_cfg(weights=str(path)), (8, 6), 2)


def test_checksum_mismatch_for_a_known_file(ckpt):
    path, _ = ckpt
    size = path.stat().st_size
    bb.register_backbone(dataclasses.replace(TINY_SPEC, known_files=(bb.KnownFile(path.name, size, "0" * 64),)))
    with pytest.raises(WeightsError, match=r"sha256 [0-9a-f]{64} but the published tiny_dinov2_pretrain.pth has 0{64}"):
        build_model(tiny_cfg(weights=str(path)), (8, 6), 2)
    bb.register_backbone(dataclasses.replace(TINY_SPEC, known_files=(bb.KnownFile(path.name, size + 1, "0" * 64),)))
    with pytest.raises(WeightsError, match=r"bytes but the published"):
        build_model(tiny_cfg(weights=str(path)), (8, 6), 2)


def test_truncated_official_dinov2_file_is_rejected_before_loading(tmp_path):
    fake = tmp_path / "dinov2_vits14_pretrain.pth"
    fake.write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsError, match=r"1,000 bytes but the published dinov2_vits14_pretrain.pth has 88,283,115"):
        build_model(tiny_cfg(backbone="dinov2_vits14", weights=str(fake)), (8, 6), 2)


def test_missing_weights_without_random_init_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("STVFM_WEIGHTS_DIR", str(tmp_path / "w"))
    with pytest.raises(WeightsError) as e:
        build_model(tiny_cfg(backbone="dinov2_vits14", allow_random_init=False), (8, 6), 2)
    msg = str(e.value)
    assert "set model.weights" in msg and "model.allow_random_init: true" in msg
    assert "stvfm weights fetch dinov2_vits14" in msg and str(tmp_path / "w" / "dinov2_vits14_pretrain.pth") in msg
    with pytest.raises(WeightsError, match=r"weights file '.*nope.pth' not found"):
        build_model(tiny_cfg(weights=str(tmp_path / "nope.pth")), (8, 6), 2)


def test_wrong_architecture_checkpoint_is_a_weights_error(tmp_path):
    sd = official_dinov2_state()
    sd["blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    path = tmp_path / "other.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"could not be loaded into vit_small_patch14_dinov2"):
        build_model(tiny_cfg(weights=str(path)), (8, 6), 2)


def test_paper_backbones_build_on_meta_with_expected_sizes():
    expected_vfm = {
        "dinov2_vits14": 21_000_000,
        "clip_vitb16": 85_000_000,
        "deit_vitb16": 85_000_000,
        "vit_tiny": 5_400_000,
    }
    for name, approx in expected_vfm.items():
        model, info = build_model_on_meta(tiny_cfg(backbone=name, d_temporal=64, heads=4), (16, 8), 2)
        trainable, total = count_parameters(model)
        vfm_frozen = total - trainable - sum(p.numel() for p in model.vfm.parameters() if p.requires_grad)
        assert info.embed_dim == bb.BACKBONES[name].embed_dim and info.blocks_used == 12
        assert 0.95 * approx < vfm_frozen < 1.08 * approx, (name, vfm_frozen)
        assert next(model.parameters()).is_meta


def test_fetch_uses_cache_and_verifies(tmp_path, monkeypatch, ckpt):
    path, _ = ckpt
    calls = []

    def fake_url(url, target, sha):
        calls.append((url, sha))
        target.write_bytes(path.read_bytes())

    spec = dataclasses.replace(TINY_SPEC, fetch=("url", "https://example.invalid/tiny.pth", "tiny.pth"))
    bb.register_backbone(spec)
    r = fetch_weights(TINY, tmp_path / "cache", url_fetcher=fake_url)
    assert r["path"] == str(tmp_path / "cache" / "tiny.pth") and r["sha256"] == bb.sha256_file(path)
    fetch_weights(TINY, tmp_path / "cache", url_fetcher=fake_url)  # already there: no second download
    assert calls == [("https://example.invalid/tiny.pth", None)]

    def failing(url, target, sha):
        raise OSError("network unreachable")

    with pytest.raises(DownloadError, match=r"could not fetch test_tiny_dinov2 weights.*network unreachable"):
        fetch_weights(TINY, tmp_path / "other", url_fetcher=failing)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE=1"):
        fetch_weights("deit_vitb16", tmp_path / "hf")
    # the official DINOv2 fetch passes the published sha256 to the downloader
    seen = {}
    with pytest.raises(WeightsError):  # the fake writes a wrong file, which verification then rejects
        fetch_weights(
            "dinov2_vits14", tmp_path / "d", url_fetcher=lambda u, t, s: (seen.update(sha=s), t.write_bytes(b"x"))
        )
    assert seen["sha"] == "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9"


def test_verify_file_and_cli(ckpt, capsys):
    path, sd = ckpt
    r = verify_file(path, TINY)
    assert r["tensors"] == len(sd) and r["known_file"] is None and r["loads_into"] == "vit_small_patch14_dinov2"
    assert main(["weights", "verify", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sha256"] == bb.sha256_file(path) and out["tensors"] == len(sd)
    bad = path.with_name("dinov2_vits14_pretrain.pth")
    bad.write_bytes(b"not a checkpoint")
    assert main(["weights", "verify", str(bad)]) == 2
    assert "88,283,115" in capsys.readouterr().err


def test_model_info_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: ModelConfig defaults
    rc = main(
        [
            "model-info",
            "--variant",
            "full",
            "--backbone",
            TINY,
            "--grid",
            "10x20",
            "--channels",
            "1",
            "--json",
            "--set",
            "model.d_temporal=16",
        ]
    )
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["output_st"] == [2, 6, 1, 10, 20] and r["output_flow"] == [2, 6, 1, 10, 20]
    assert 0 < r["trainable_params"] < r["total_params"] and r["pretrained"] is False
    assert main(["model-info", "--backbone", "nope", "--grid", "8x8"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err
    assert main(["model-info", "--grid", "8by8"]) == 2
