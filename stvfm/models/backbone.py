"""The frozen vision foundation model (VFM): our backbone names -> timm models, D_VFM, and offline weight loading.

Only the VFM's Transformer blocks and final norm are used (plus ``norm_pre``, which is an identity except for CLIP's
``ln_pre``). Its patch embedding, image positional embedding, class token and head are dropped: ST-VFM feeds its own
tokens (one per Ps×Ps patch of the grid, with its own learnable positional embedding, Eq. 8) and needs no class
token, since the decoder predicts every patch and never reads a pooled image feature.

Weights come from a local file (``model.weights``) and are loaded through timm's own checkpoint converter
(``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path))``), so the official DINOv2
release file, timm/HF ``.safetensors`` files and plain state dicts all load; nothing touches the network here.
``torch.load`` runs with ``weights_only=True`` (timm's default for files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stvfm.errors import ConfigError, WeightsError
from stvfm.io import sha256_file
from stvfm.models.layers import SMALL_SCORES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownFile:
    """A published weights file whose size and sha256 we know: a file with this name must match them."""

    filename: str
    bytes: int
    sha256: str
    url: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # our name (model.backbone)
    timm_name: str  # timm registry name
    embed_dim: int  # D_VFM
    depth: int  # number of Transformer blocks
    title: str = ""
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # extra create_model kwargs (architecture overrides)
    known_files: tuple[KnownFile, ...] = ()
    # where `stvfm weights fetch` gets the file: ("url", url, filename) or ("hf", repo_id, filename)
    fetch: tuple[str, str, str] | None = None


_DINOV2_S = KnownFile(
    "dinov2_vits14_pretrain.pth",
    88_283_115,
    "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9",
    "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
)

BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        BackboneSpec(
            "dinov2_vits14",
            "vit_small_patch14_dinov2",
            384,
            12,
            "DINOv2 ViT-S/14 (the paper's primary VFM)",
            # the official checkpoint's pos-embed is 37×37 (518 px); build at that size so it loads unchanged
            timm_kwargs={"img_size": 518},
            known_files=(_DINOV2_S,),
            fetch=("url", _DINOV2_S.url, _DINOV2_S.filename),
        ),
        # OpenAI CLIP uses QuickGELU: timm's vit_base_patch16_clip_224 with act_layer=quick_gelu is exactly
        # timm's vit_base_patch16_clip_quickgelu_224 (same tensors, the activation the weights were trained with).
        BackboneSpec(
            "clip_vitb16",
            "vit_base_patch16_clip_224",
            768,
            12,
            "CLIP ViT-B/16 (OpenAI) image tower",
            timm_kwargs={"act_layer": "quick_gelu"},
            fetch=("hf", "timm/vit_base_patch16_clip_224.openai", "model.safetensors"),
        ),
        BackboneSpec(
            "deit_vitb16",
            "deit_base_patch16_224",
            768,
            12,
            "DeiT-B/16 (ImageNet-1k, supervised)",
            fetch=("hf", "timm/deit_base_patch16_224.fb_in1k", "model.safetensors"),
        ),
        BackboneSpec(
            "vit_tiny",
            "vit_tiny_patch16_224",
            192,
            12,
            "ViT-Ti/16 (CPU profile)",
            fetch=("hf", "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors"),
        ),
    ]
}


def register_backbone(spec: BackboneSpec) -> None:
    """Add (or replace) a backbone entry, e.g. a tiny test ViT or a user's own timm model."""
    BACKBONES[spec.name] = spec


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"model.backbone: unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}") from None


@dataclass
class BackboneInfo:
    """What was built, for logging with a training run (``to_dict()`` goes into checkpoints and MLflow)."""

    name: str
    timm_name: str
    embed_dim: int
    pretrained: bool
    weights_path: str | None = None
    weights_sha256: str | None = None
    random_init_reason: str | None = None
    blocks_used: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_weights_dir() -> Path:
    """Where ``stvfm weights fetch`` saves files: ``$STVFM_WEIGHTS_DIR`` or ``~/.cache/stvfm/weights``."""
    env = os.environ.get("STVFM_WEIGHTS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stvfm" / "weights"


def fetch_target(spec: BackboneSpec, cache_dir: str | Path | None = None) -> Path:
    """The file path ``stvfm weights fetch <backbone>`` writes (shown in error messages)."""
    d = Path(cache_dir) if cache_dir is not None else default_weights_dir()
    if spec.fetch is None:
        return d / f"{spec.name}.pth"
    kind, _, filename = spec.fetch
    return d / filename if kind == "url" else d / spec.name / filename


def known_file_for(path: str | Path, spec: BackboneSpec | None = None) -> KnownFile | None:
    """The known published file with this file name (in ``spec`` or, without one, in any backbone)."""
    name = Path(path).name
    specs = [spec] if spec is not None else list(BACKBONES.values())
    for s in specs:
        for k in s.known_files:
            if k.filename == name:
                return k
    return None


def verify_weights_file(path: str | Path, spec: BackboneSpec | None = None, key: str = "model.weights") -> str:
    """Check that ``path`` exists and, when it is a known published file, that size and sha256 match. Returns sha256."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(
            f"{key}: weights file '{p}' not found; fetch it with `stvfm weights fetch "
            f"{spec.name if spec else '<backbone>'}` or correct the path"
        )
    known = known_file_for(p, spec)
    size = p.stat().st_size
    if known is not None and size != known.bytes:
        raise WeightsError(
            f"{key}: '{p}' has {size:,} bytes but the published {known.filename} has {known.bytes:,} "
            f"(truncated or a different file); download it again with `stvfm weights fetch`"
        )
    digest = sha256_file(p)
    if known is not None and digest != known.sha256:
        raise WeightsError(
            f"{key}: '{p}' has sha256 {digest} but the published {known.filename} has {known.sha256}; "
            f"the file is corrupt or not the official release: download it again with "
            f"`stvfm weights fetch`"
        )
    return digest


class FrozenLinear(nn.Linear):
    """A frozen ``nn.Linear`` of the VFM whose bf16 copy is made once, not at every call: under bf16 autocast a
    weight that needs no gradient is otherwise cast again in every forward (autocast caches only trainable leaves).
    The copy is remade when the weight changes (``load_state_dict``, a move to another device); the product is the
    same as autocast's (the same cast, the same kernel: bit-identical, tests/models/test_speed_equivalence.py)."""

    _bf16_cache: tuple | None = None

    def _bf16(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = tuple((t._version, t.data_ptr(), t.device) for t in (self.weight, self.bias) if t is not None)
        if self._bf16_cache is None or self._bf16_cache[0] != key:
            bias = None if self.bias is None else self.bias.detach().to(torch.bfloat16)
            self._bf16_cache = (key, self.weight.detach().to(torch.bfloat16), bias)
        return self._bf16_cache[1], self._bf16_cache[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        if (
            dev in ("cpu", "cuda")
            and not self.weight.requires_grad
            and self.weight.dtype == torch.float32
            and not torch.compiler.is_compiling()
            and torch.is_autocast_enabled(dev)
            and torch.get_autocast_dtype(dev) == torch.bfloat16
        ):
            w, b = self._bf16()
            return F.linear(x.to(torch.bfloat16), w, b)
        return super().forward(x)


class FrozenVFM(nn.Module):
    """The VFM's blocks (optionally wrapped with adapters) and final norm, applied to (batch, tokens, D_VFM).

    Frozen parameters have ``requires_grad=False``; the module stays in eval mode whatever ``train()`` says, except
    for trainable sub-modules (adapters), which follow the requested mode.
    """

    def __init__(self, vit: nn.Module, blocks: int | None = None):
        super().__init__()
        all_blocks = list(vit.blocks)
        n = len(all_blocks) if blocks is None else blocks
        self.norm_pre = getattr(vit, "norm_pre", None) or nn.Identity()
        self.blocks = nn.ModuleList(all_blocks[:n])
        self.norm = vit.norm
        self.embed_dim = int(vit.embed_dim)
        for p in self.parameters():
            p.requires_grad_(False)
        for m in self.modules():  # the frozen linears keep one bf16 copy for bf16 autocast (same parameters)
            if type(m) is nn.Linear:
                m.__class__ = FrozenLinear
        self.eval()

    @property
    def _timm_attn(self) -> list[nn.Module]:
        return [m for m in self.blocks.modules() if hasattr(m, "fused_attn")]

    def train(self, mode: bool = True) -> FrozenVFM:
        self.training = mode
        for m in self.modules():
            if m is self:
                continue
            m.training = mode and any(p.requires_grad for p in m.parameters())  # adapters: yes; frozen parts: no
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # timm's attention: fused SDPA on long sequences / GPUs, plain matmuls on the short CPU sequences here
        # (same function; stvfm.models.layers.attention has the measurement)
        fused = x.is_cuda or x.shape[1] ** 2 > SMALL_SCORES
        for m in self._timm_attn:
            m.fused_attn = fused
        x = self.norm_pre(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def create_vit(spec: BackboneSpec, weights: str | Path | None = None) -> nn.Module:
    """A timm ViT for ``spec``; with ``weights`` loaded from that local file (offline, via timm's converter)."""
    import timm

    kwargs: dict[str, Any] = dict(num_classes=0, **spec.timm_kwargs)
    if weights is None:
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    # timm logs "Loading pretrained weights from file" at INFO; failures below become WeightsError. timm's loader is
    # not strict when the classifier is dropped (num_classes=0): what it loaded is recorded and checked here.
    try:
        with _recorded_loads() as loads:
            vit = timm.create_model(
                spec.timm_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), **kwargs
            )
        check_loaded(loads, spec, weights)
        return vit
    except (RuntimeError, KeyError, ValueError, OSError, EOFError) as e:
        raise WeightsError(
            f"model.weights: '{weights}' could not be loaded into {spec.timm_name} "
            f"(backbone '{spec.name}'): {type(e).__name__}: {str(e)[:400]}. Point model.weights at a "
            f"checkpoint of this backbone (`stvfm weights fetch {spec.name}`)"
        ) from e
    except Exception as e:  # torch.load's UnpicklingError for pickles that are not plain tensors
        if type(e).__name__ == "UnpicklingError":
            raise WeightsError(
                f"model.weights: '{weights}' is not a plain weights file that loads with "
                f"weights_only=True: {str(e)[:300]}"
            ) from e
        raise


# Parts of a ViT checkpoint the project drops (ST-VFM feeds its own tokens and never reads a pooled feature): they may
# be absent from a file (missing) or present without a place in the model (unexpected). Everything else must match:
# every block, the final norm, norm_pre where the architecture has one, and the patch and position embeddings.
DROPPED_MISSING = ("cls_token", "reg_token", "mask_token")
DROPPED_PREFIXES = (
    "head.",
    "head_dist.",
    "fc_norm.",
    "pre_logits.",
    "attn_pool.",
    "cls_token",
    "reg_token",
    "mask_token",
    "dist_token",
)


@contextlib.contextmanager
def _recorded_loads() -> Iterator[list[Any]]:
    """Record the result (missing/unexpected keys) of every ``nn.Module.load_state_dict`` call in this block."""
    results: list[Any] = []
    original = nn.Module.load_state_dict

    def recording(self, *args, **kwargs):
        r = original(self, *args, **kwargs)
        results.append(r)
        return r

    nn.Module.load_state_dict = recording  # type: ignore[method-assign]
    try:
        yield results
    finally:
        nn.Module.load_state_dict = original  # type: ignore[method-assign]


def _names(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def check_loaded(loads: list[Any], spec: BackboneSpec, weights: str | Path) -> None:
    """Strict about the backbone: no key of the model missing from the file (except the dropped tokens) and no key of
    the file without a place (except dropped heads). Raises WeightsError naming the keys."""
    if not loads:
        raise WeightsError(
            f"model.weights: '{weights}': nothing was loaded into {spec.timm_name} (backbone '{spec.name}')"
        )
    r = loads[-1]
    missing = [k for k in r.missing_keys if k not in DROPPED_MISSING]
    unexpected = [k for k in r.unexpected_keys if not k.startswith(DROPPED_PREFIXES)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing from the file: {_names(missing)}")
        if unexpected:
            parts.append(f"in the file but not in the backbone: {_names(unexpected)}")
        raise WeightsError(
            f"model.weights: '{weights}' does not fit backbone '{spec.name}' ({spec.timm_name}): "
            f"{'; '.join(parts)}. Point model.weights at a checkpoint of this backbone "
            f"(`stvfm weights fetch {spec.name}`)"
        )


_WARNED_RANDOM_INIT: set[str] = set()


def build_backbone(
    name: str, weights: str | None = None, allow_random_init: bool = False, vfm_blocks: int | None = None
) -> tuple[FrozenVFM, BackboneInfo]:
    """Frozen VFM + the :class:`BackboneInfo` describing it. Raises WeightsError when no weights are available."""
    spec = get_backbone_spec(name)
    if vfm_blocks is not None and not 1 <= vfm_blocks <= spec.depth:
        raise ConfigError(
            f"model.vfm_blocks: {vfm_blocks} is outside 1..{spec.depth} for backbone '{name}'; "
            f"use null for all {spec.depth} blocks"
        )
    if weights:
        digest = verify_weights_file(weights, spec)
        vit = create_vit(spec, weights)
        info = BackboneInfo(name, spec.timm_name, spec.embed_dim, True, str(weights), digest)
    else:
        if not allow_random_init:
            target = fetch_target(spec)
            raise WeightsError(
                f"model.weights is not set for backbone '{name}': set model.weights to a local weights file "
                f"(`stvfm weights fetch {name}` saves it to {target}), or set model.allow_random_init: true to train "
                f"on a randomly initialised VFM (logged as such)"
            )
        reason = "model.weights not set and model.allow_random_init is true"
        # once per process (a stage builds the model more than once: train + score, evaluate + maps)
        (log.warning if name not in _WARNED_RANDOM_INIT else log.debug)(
            "backbone '%s' (%s): no weights given, using a RANDOMLY INITIALISED VFM (%s)", name, spec.timm_name, reason
        )
        _WARNED_RANDOM_INIT.add(name)
        vit = create_vit(spec, None)
        info = BackboneInfo(name, spec.timm_name, spec.embed_dim, False, None, None, reason)
    vfm = FrozenVFM(vit, vfm_blocks)
    info.blocks_used = len(vfm.blocks)
    del vit
    return vfm, info
