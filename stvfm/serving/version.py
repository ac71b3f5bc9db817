"""A safe, self-describing model version: the network's tensors (safetensors) + a JSON config. Nothing else is read.

A model version is a folder (locally, or the ``artifacts/`` of an MLflow pyfunc model in the registry) holding

    config.json          format, model_cfg (variant, backbone, ...), arch, dataset, grid, channels, channel_names,
                         history, horizon, interval_minutes, time_identity, the train-fitted scaler (its JSON form),
                         backbone info (name, pretrained), scale_1e3
    weights.safetensors  the full state dict (frozen VFM blocks included), loaded with safetensors: tensors only

:func:`stvfm.serving.forecaster.load_version` rebuilds the network from the *installed* package (``stvfm.models.factory.build_model``) and
loads the tensors into it (strict: every key must match). No pickle and no code from the tracking server is ever
loaded: an old pickled version (``mlflow.pytorch``), a weights file that is not safetensors, or a config that is not
this JSON is refused with one line.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from stvfm.config import ModelConfig, from_dict
from stvfm.errors import DataError, StvfmError
from stvfm.io import atomic_path, write_json

FORMAT = "stvfm-model-version/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
REQUIRED = ("model_cfg", "arch", "dataset", "grid", "channels", "history", "horizon", "interval_minutes", "scaler")


def version_config(best: dict[str, Any], scaler, split_meta: dict[str, Any]) -> dict[str, Any]:
    """config.json of the model in ``best`` (a best.pt dict) trained on a split with ``split_meta``/``scaler``."""
    from stvfm.models.factory import needs_time_ids

    cfg = dict(best["model_cfg"])
    backbone = dict(best.get("backbone") or {})
    return {
        "format": FORMAT,
        "model_cfg": cfg,
        "arch": best.get("arch") or cfg.get("arch", "stvfm"),
        "dataset": str(best["dataset"]),
        "grid": [int(v) for v in best["grid"]],
        "channels": int(best["channels"]),
        "channel_names": [str(c) for c in split_meta.get("channel_names") or []],
        "history": int(best["history"]),
        "horizon": int(best["horizon"]),
        "interval_minutes": int(split_meta["interval_minutes"]),
        "time_identity": needs_time_ids(cfg),
        "scale_1e3": bool(split_meta.get("scale_1e3", False)),
        "scaler": scaler.to_dict(),
        "backbone": {k: v for k, v in backbone.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "epoch": best.get("epoch"),
        "val": dict(best.get("val") or {}),
    }


def write_version(folder: str | Path, config: dict[str, Any], state_dict: dict[str, Any]) -> Path:
    """Write ``config.json`` + ``weights.safetensors`` into ``folder`` (created); returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # contiguous copies: safetensors refuses tensors that share storage (tied or sliced parameters)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_json(folder / CONFIG_FILE, config)
    return folder


def read_config(path: str | Path, where: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model '{where}' is not a safe ST-VFM model version: no {CONFIG_FILE} (an old pickled "
                        f"version? it is refused, never unpickled; re-register it with `stvfm train`)")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"model '{where}': {CONFIG_FILE} is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise DataError(f"model '{where}': {CONFIG_FILE} has format {got!r}, expected {FORMAT!r}")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise DataError(f"model '{where}': {CONFIG_FILE} lacks key(s) {', '.join(missing)}")
    return cfg


def read_weights(path: str | Path, where: str) -> dict[str, Any]:
    """Tensors of a safetensors file; anything else (a pickle, a torch zip, garbage) is refused unread."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"model '{where}' has no {WEIGHTS_FILE}; refusing to load weights in any other format")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DataError(f"model '{where}': {WEIGHTS_FILE} is not a valid safetensors file "
                        f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}); it is never unpickled")


def build_network(config: dict[str, Any], state_dict: dict[str, Any], where: str = "model"):
    """The network from the installed package, with ``state_dict`` loaded strictly (no backbone file is read: the
    state dict carries every weight, the frozen VFM blocks included)."""
    from stvfm.models.factory import build_model  # torch + timm: loaded when a network is built

    try:
        cfg = from_dict(ModelConfig, config["model_cfg"], f"{where}: {CONFIG_FILE} model_cfg")
        cfg = dataclasses.replace(cfg, weights=None, allow_random_init=True)
        quiet = logging.getLogger("stvfm.models.backbone")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "random init" is only the skeleton: every weight comes from the state dict
        try:
            model, _ = build_model(cfg, grid=tuple(config["grid"]), channels=int(config["channels"]),
                                   history=int(config["history"]), horizon=int(config["horizon"]),
                                   interval_minutes=int(config["interval_minutes"]))
        finally:
            quiet.setLevel(level)
    except StvfmError as e:
        raise DataError(f"model '{where}': cannot rebuild the network from {CONFIG_FILE}: {e}") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise DataError(f"model '{where}': {WEIGHTS_FILE} does not fit its {CONFIG_FILE} "
                        f"({' '.join(str(e).split())[:300]})") from None
    return model.eval()


def is_local_version(source: str | Path) -> bool:
    p = Path(str(source))
    return p.is_dir() and (p / CONFIG_FILE).is_file()


TEST_LINE = "- test MAE / RMSE:"


def model_card(config: dict[str, Any], tags: dict[str, Any]) -> str:
    """The registry description of a version: data, model, metrics, profile, pretrained or not, how to use it."""
    bb = config.get("backbone") or {}
    cfg = config["model_cfg"]
    pretrained = str(tags.get("pretrained_backbone", bb.get("pretrained", False))).lower() == "true"
    grid = "x".join(str(v) for v in config["grid"])
    names = ", ".join(config.get("channel_names") or []) or f"{config['channels']} channel(s)"
    val = (config.get("val") or {}).get("val_mae")
    lines = [
        f"ST-VFM forecaster for '{config['dataset']}': {config['history']} steps in -> {config['horizon']} out, "
        f"{config['interval_minutes']}-minute steps, grid {grid}, channels {names}; original scale in and out.",
        "",
        f"- model: arch {config['arch']}, variant {cfg.get('variant')}, backbone {cfg.get('backbone')} "
        f"({'pretrained weights' if pretrained else 'RANDOM INIT, not pretrained'}), "
        f"VFM blocks {bb.get('blocks_used', cfg.get('vfm_blocks'))}, time identities "
        f"{'yes (needs last_time)' if config.get('time_identity') else 'no'}",
        f"- data: {config['dataset']}, split md5 {tags.get('data_md5', 'unknown')}; profile {tags.get('profile', '?')}; "
        f"git {tags.get('git_commit', 'unknown')}",
        f"- validation MAE (best epoch {config.get('epoch')}): {val if val is None else f'{float(val):.4g}'}",
        f"{TEST_LINE} {tags['test_mae']} / {tags['test_rmse']}" if "test_mae" in tags else
        f"{TEST_LINE} pending (the evaluate stage fills it in)",
        "- files: artifacts/config.json + artifacts/weights.safetensors (tensors and JSON only, no pickles)",
        f"- use: `stvfm predict --model models:/stvfm-{config['dataset']}@champion --input series.npz --out fc.npz`, "
        f"`mlflow models serve -m models:/stvfm-{config['dataset']}@champion --env-manager local` (docs/serving.md)",
    ]
    return "\n".join(lines)


def with_test_metrics(card: str, mae: float, rmse: float) -> str:
    """The card with its test line set to ``mae`` / ``rmse``."""
    new = f"{TEST_LINE} {mae:.4g} / {rmse:.4g}"
    lines = (card or "").splitlines()
    for i, line in enumerate(lines):
        if line.startswith(TEST_LINE):
            lines[i] = new
            return "\n".join(lines)
    return "\n".join([*lines, new])
