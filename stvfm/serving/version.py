"""A safe, self-describing model version: the network's tensors (safetensors) + a JSON config. Nothing else is read.

A model version is a folder (locally, or the ``artifacts/`` of an MLflow pyfunc model in the registry) holding

    config.json          format, model_cfg (variant, backbone, ...), arch, dataset, grid, channels, channel_names,
                         history, horizon, interval_minutes, time_identity, the train-fitted scaler (its JSON form),
                         backbone info (name, pretrained), scale_1e3
                         digest: sha256 of the weights file and of this config (canonical JSON, without the digest)
    weights.safetensors  the full state dict (frozen VFM blocks included), loaded with safetensors: tensors only; its
                         metadata repeat the grid, channels, history and horizon

Its parts must agree before anything is built: the digest (and the one the registry holds for the version, tags
``config_sha256``/``weights_sha256``), the weights' metadata vs the config, every tensor float32 and finite, the
scaler finite and shaped for the config's channels (and grid, per cell) — :func:`verify_digest`, :func:`check_parts`.

:func:`stvfm.serving.forecaster.load_version` rebuilds the network from the *installed* package
(``stvfm.models.factory.build_model``) and loads the tensors into it (strict: every key must match). No pickle and no
code from the tracking server is ever loaded: an old pickled version (``mlflow.pytorch``), a weights file that is not
safetensors, or a config that is not this JSON is refused with one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.config import ModelConfig, from_dict
from stvfm.errors import DataError, StvfmError
from stvfm.io import atomic_path, write_json

FORMAT = "stvfm-model-version/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
REQUIRED = (
    "model_cfg",
    "arch",
    "dataset",
    "grid",
    "channels",
    "history",
    "horizon",
    "interval_minutes",
    "scaler",
    "digest",
)
DIGEST = "digest"
SHAPE_KEYS = ("grid", "channels", "history", "horizon")  # repeated in the weights file's metadata


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


def canonical(config: dict[str, Any]) -> bytes:
    """The config as canonical JSON (sorted keys, no spaces, ASCII), without its digest: what is hashed."""
    body = {k: v for k, v in config.items() if k != DIGEST}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _shape_meta(config: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(config[k], separators=(",", ":")) for k in SHAPE_KEYS}


def write_version(folder: str | Path, config: dict[str, Any], state_dict: dict[str, Any]) -> Path:
    """Write ``config.json`` (with its digest) + ``weights.safetensors`` (with the grid, channels, history and horizon
    in its metadata) into ``folder`` (created); returns it."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps({k: v for k, v in config.items() if k != DIGEST}, default=str))  # plain JSON
    # contiguous copies: safetensors refuses tensors that share storage (tied or sliced parameters)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata={"format": FORMAT, **_shape_meta(config)})
    config[DIGEST] = {
        "algorithm": "sha256",
        "config": hashlib.sha256(canonical(config)).hexdigest(),
        "weights": hashlib.sha256(data).hexdigest(),
    }
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        tmp.write_bytes(data)
    write_json(folder / CONFIG_FILE, config)
    return folder


def read_config(path: str | Path, where: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"model '{where}' is not a safe ST-VFM model version: no {CONFIG_FILE} (an old pickled "
            f"version? it is refused, never unpickled; re-register it with `stvfm train`)"
        )
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"model '{where}': {CONFIG_FILE} is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise DataError(f"model '{where}': {CONFIG_FILE} has format {got!r}, expected {FORMAT!r}")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        hint = (
            " (written before versions carried digests: export it again with the train stage)"
            if missing == [DIGEST]
            else ""
        )
        raise DataError(f"model '{where}': {CONFIG_FILE} lacks key(s) {', '.join(missing)}{hint}")
    return cfg


def read_weights_bytes(path: str | Path, where: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model '{where}' has no {WEIGHTS_FILE}; refusing to load weights in any other format")
    return path.read_bytes()


def _load_tensors(data: bytes, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of safetensors bytes; anything else (a pickle, a torch zip, garbage) is refused unread."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n]) if 0 < n <= len(data) - 8 else None
        if not isinstance(header, dict):
            raise ValueError("no safetensors header")
        meta = header.get("__metadata__") or {}
        return load(data), meta if isinstance(meta, dict) else {}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as e:
        raise DataError(
            f"model '{where}': {WEIGHTS_FILE} is not a valid safetensors file "
            f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}); it is never unpickled"
        ) from None


def read_weights(path: str | Path, where: str) -> dict[str, Any]:
    """Tensors of a safetensors file; anything else (a pickle, a torch zip, garbage) is refused unread."""
    return _load_tensors(read_weights_bytes(path, where), where)[0]


def verify_digest(
    config: dict[str, Any], weights: bytes, where: str, expect: dict[str, str] | None = None
) -> dict[str, Any]:
    """The tensors of ``weights`` once the version's parts are proven to belong together: the config's digest matches
    the config and the weights bytes (and ``expect``, the digest the registry recorded, when given), and the weights'
    metadata repeat the config's grid, channels, history and horizon. One line names the first disagreement."""
    state, meta = _load_tensors(weights, where)  # a pickle or a zip is named as such first (safetensors runs no code)
    d = config.get(DIGEST)
    if (
        not isinstance(d, dict)
        or d.get("algorithm") != "sha256"
        or not all(isinstance(d.get(k), str) for k in ("config", "weights"))
    ):
        raise DataError(
            f"model '{where}': {CONFIG_FILE} has no sha256 digest; refusing a version whose parts cannot be checked"
        )
    try:
        got_config = hashlib.sha256(canonical(config)).hexdigest()
    except (TypeError, ValueError):  # not JSON data (a config built in memory)
        raise DataError(f"model '{where}': {CONFIG_FILE} is not plain JSON data") from None
    got_weights = hashlib.sha256(weights).hexdigest()
    if got_config != d["config"]:
        raise DataError(
            f"model '{where}': {CONFIG_FILE} does not match its digest (sha256 {got_config[:12]}..., "
            f"recorded {d['config'][:12]}...): it was changed after the version was written"
        )
    if got_weights != d["weights"]:
        raise DataError(
            f"model '{where}': {WEIGHTS_FILE} does not match the digest in {CONFIG_FILE} (sha256 "
            f"{got_weights[:12]}..., recorded {d['weights'][:12]}...): it was changed after the version "
            f"was written"
        )
    for key, got in (("config", got_config), ("weights", got_weights)):
        want = (expect or {}).get(key)
        if want and want != got:
            raise DataError(
                f"model '{where}': its {key} sha256 {got[:12]}... is not the {want[:12]}... recorded "
                f"in the registry when it was registered; refusing a changed version"
            )
    want = _shape_meta(config)
    for k in SHAPE_KEYS:
        if meta.get(k) != want[k]:
            raise DataError(
                f"model '{where}': {CONFIG_FILE} says {k} {want[k]}, its {WEIGHTS_FILE} was written for "
                f"{meta.get(k, 'an unknown value')}"
            )
    return state


def check_parts(config: dict[str, Any], state_dict: dict[str, Any], where: str) -> None:
    """The config, its scaler and the tensors agree (:func:`check_config`, :func:`check_tensors`). Tensor shapes vs
    the config are checked by the strict load into the rebuilt network."""
    check_config(config, where)
    check_tensors(state_dict, where)


def check_config(config: dict[str, Any], where: str) -> None:
    """Positive integer grid/channels/history/horizon/interval and a finite scaler with one value per channel (per
    cell and channel for ``per_cell``: (C, H, W)) and a positive spread."""
    from stvfm.data.scaler import Scaler

    def bad(msg: str) -> DataError:
        return DataError(f"model '{where}': {msg}")

    grid = config.get("grid")
    if not (isinstance(grid, list) and len(grid) == 2 and all(type(v) is int and 0 < v <= 4096 for v in grid)):
        raise bad(f"{CONFIG_FILE} grid must be two positive integers, got {str(grid)[:60]}")
    for k in ("channels", "history", "horizon", "interval_minutes"):
        v = config.get(k)
        if type(v) is not int or not 0 < v <= 10**6:
            raise bad(f"{CONFIG_FILE} {k} must be a positive integer, got {str(v)[:60]}")
    h, w = grid
    c = config["channels"]
    sc = config.get("scaler")
    try:
        scaler = Scaler.from_dict(sc)
    except (KeyError, TypeError, ValueError, AttributeError, DataError) as e:
        raise bad(f"{CONFIG_FILE} has no usable scaler ({str(e)[:200]})") from None
    want = (c, h, w) if scaler.per_cell else (c,)
    for arr in (scaler.shift, scaler.scale):
        if arr.shape != want:
            raise bad(
                f"the {scaler.kind} scaler has shape {arr.shape}, the config's {c} channel(s)"
                f"{f' on a {h}x{w} grid' if scaler.per_cell else ''} need {want}"
            )
        if not np.isfinite(arr).all():
            raise bad(f"the {scaler.kind} scaler holds NaN/inf values")
    if not (scaler.scale > 0).all():
        raise bad(f"the {scaler.kind} scaler has a non-positive spread")


def check_tensors(state_dict: dict[str, Any], where: str) -> None:
    """Every entry a tensor; every floating tensor float32 and finite."""
    import torch

    def bad(msg: str) -> DataError:
        return DataError(f"model '{where}': {msg}")

    for k, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise bad(f"{WEIGHTS_FILE} entry {k[:80]!r} is not a tensor")
        if t.is_floating_point():
            if t.dtype != torch.float32:
                raise bad(
                    f"{WEIGHTS_FILE} tensor {k[:80]!r} is {str(t.dtype).replace('torch.', '')}; versions "
                    f"hold float32 tensors"
                )
            if not bool(torch.isfinite(t).all()):
                raise bad(f"{WEIGHTS_FILE} tensor {k[:80]!r} holds NaN/inf values")


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
            model, _ = build_model(
                cfg,
                grid=tuple(config["grid"]),
                channels=int(config["channels"]),
                history=int(config["history"]),
                horizon=int(config["horizon"]),
                interval_minutes=int(config["interval_minutes"]),
            )
        finally:
            quiet.setLevel(level)
    except StvfmError as e:
        raise DataError(f"model '{where}': cannot rebuild the network from {CONFIG_FILE}: {e}") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise DataError(
            f"model '{where}': {WEIGHTS_FILE} does not fit its {CONFIG_FILE} ({' '.join(str(e).split())[:300]})"
        ) from None
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
        f"- data: {config['dataset']}, split md5 {tags.get('data_md5', 'unknown')}; "
        f"profile {tags.get('profile', '?')}; "
        f"git {tags.get('git_commit', 'unknown')}",
        f"- validation MAE (best epoch {config.get('epoch')}): {val if val is None else f'{float(val):.4g}'}",
        f"{TEST_LINE} {tags['test_mae']} / {tags['test_rmse']}"
        if "test_mae" in tags
        else f"{TEST_LINE} pending (the evaluate stage fills it in)",
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
