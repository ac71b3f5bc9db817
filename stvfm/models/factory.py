"""``build_model(model_cfg, grid, channels, history, horizon, interval_minutes=...) -> (nn.Module, BackboneInfo)``: the
one entry point.

``model_cfg.arch == "stvfm"`` builds :class:`stvfm.models.stvfm.STVFM` on a frozen VFM; ``"stid"`` builds
:class:`stvfm.models.stid.STID` (the deep baseline, ``model.stid.*``), which has no VFM (its BackboneInfo says so); its
time-of-day table has one row per slot of a day at ``interval_minutes``.
"""

from __future__ import annotations

import torch
from torch import nn

from stvfm.config import ModelConfig
from stvfm.errors import ConfigError
from stvfm.models.backbone import BackboneInfo, build_backbone, get_backbone_spec
from stvfm.models.tokenizer import check_patch_size

ARCHS = ("stvfm", "stid")


def validate_model_config(cfg: ModelConfig, grid: tuple[int, int], channels: int, history: int, horizon: int) -> None:
    from stvfm.models.stvfm import VARIANT_SPECS

    if cfg.variant not in VARIANT_SPECS:
        raise ConfigError(f"model.variant: '{cfg.variant}' is not one of {', '.join(VARIANT_SPECS)}")
    get_backbone_spec(cfg.backbone)
    if channels < 1:
        raise ConfigError(f"channels must be >= 1, got {channels}")
    if history < 1 or horizon < 1:
        raise ConfigError(f"data.history and data.horizon must be >= 1, got {history} and {horizon}")
    check_patch_size(tuple(grid), cfg.patch_size)
    for key in ("d_temporal", "heads", "adapter_dim"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(cfg, key)}")
    for key in ("temporal_layers", "decoder_layers", "prompt_tokens"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"model.{key}: must be >= 0, got {getattr(cfg, key)}")
    if cfg.prompt_layers is not None and cfg.prompt_layers < 0:
        raise ConfigError(
            f"model.prompt_layers: must be >= 0 (or null for the dataset's value), got {cfg.prompt_layers}"
        )
    if cfg.d_temporal % cfg.heads:
        raise ConfigError(
            f"model.d_temporal={cfg.d_temporal} is not divisible by model.heads={cfg.heads}; "
            f"choose heads that divide d_temporal (e.g. 4 for 64)"
        )
    if cfg.lambda_flow < 0:
        raise ConfigError(f"model.lambda_flow: must be >= 0, got {cfg.lambda_flow}")
    from stvfm.models.output_path import OUTPUTS

    if cfg.output not in OUTPUTS:
        raise ConfigError(f"model.output: '{cfg.output}' is not one of {', '.join(OUTPUTS)}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {cfg.dropout}")


def needs_time_ids(model_cfg) -> bool:
    """Whether a model built from ``model_cfg`` (a ModelConfig or its dict) reads time identities and refuses input
    without them (so predict/serve/forecast need timestamps): STID, ``model.time_identity``, ``model.output=anchored``
    (or ``identity`` with STID's clock on)."""
    get = model_cfg.get if isinstance(model_cfg, dict) else (lambda k, d=None: getattr(model_cfg, k, d))

    def stid_clock() -> bool:
        stid = get("stid", None) or {}
        sget = stid.get if isinstance(stid, dict) else (lambda k, d=None: getattr(stid, k, d))
        return bool(sget("time_identity", True) or sget("time_inputs", False))

    if get("arch", "stvfm") == "stid":
        return stid_clock()
    if get("output", "plain") == "identity" and stid_clock():
        return True
    return bool(get("time_identity", False)) or get("output", "plain") == "anchored"


def build_model(
    model_cfg: ModelConfig,
    grid: tuple[int, int],
    channels: int,
    history: int = 6,
    horizon: int = 6,
    interval_minutes: int | None = None,
) -> tuple[nn.Module, BackboneInfo]:
    """``interval_minutes`` (the data's step) sizes the time-of-day tables; required when the model reads the clock
    (:func:`needs_time_ids`)."""
    grid = (int(grid[0]), int(grid[1]))
    if model_cfg.arch == "stid":
        from stvfm.models.stid import build_stid

        model = build_stid(model_cfg, grid, channels, history, horizon, interval_minutes)
        return model, BackboneInfo("none", "", 0, False, None, None, "arch 'stid' has no VFM backbone")
    if model_cfg.arch != "stvfm":
        raise ConfigError(f"model.arch: '{model_cfg.arch}' is not one of {', '.join(ARCHS)}")
    validate_model_config(model_cfg, grid, channels, history, horizon)
    if needs_time_ids(model_cfg) and interval_minutes is None:
        raise ConfigError(
            "model.time_identity / model.output=anchored|identity read the clock: building the model "
            "needs the data interval (interval_minutes) to size its time-of-day tables"
        )
    from stvfm.models.stvfm import STVFM

    vfm, info = build_backbone(model_cfg.backbone, model_cfg.weights, model_cfg.allow_random_init, model_cfg.vfm_blocks)
    model = STVFM(model_cfg, vfm, grid, channels, history, horizon, interval_minutes)
    return model, info


def build_model_on_meta(
    model_cfg: ModelConfig,
    grid: tuple[int, int],
    channels: int,
    history: int = 6,
    horizon: int = 6,
    interval_minutes: int | None = None,
) -> tuple[nn.Module, BackboneInfo]:
    """Build without allocating memory (``meta`` device, random init) — for parameter counts of large backbones."""
    import dataclasses

    cfg = dataclasses.replace(model_cfg, weights=None, allow_random_init=True)
    with torch.device("meta"):
        return build_model(cfg, grid, channels, history, horizon, interval_minutes)
