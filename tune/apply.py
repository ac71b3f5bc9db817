"""``stvfm tune apply tune/results/<ds>/best.yaml``: write the best trial's config into params.yaml.

Only the searched keys (``config``) and the profile's per-trial overrides (``set``) are written, not the study's
epochs/resources; comments and layout of params.yaml are kept (ruamel round-trip), and the result is validated
before it replaces the file atomically. Then ``dvc repro`` (or ``stvfm train``) trains with it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stvfm.config import params_from_dict
from stvfm.errors import ConfigError
from stvfm.io import atomic_path


def read_best(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(
            f"best config '{p}' not found; run `python -m tune.run --dataset <ds>` first "
            "(it writes tune/results/<ds>/best.yaml)"
        )
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"best config '{p}' is not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) or not doc["config"]:
        raise ConfigError(f"best config '{p}': expected a mapping with a non-empty 'config' (dotted params keys)")
    return doc


def updates_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {**dict(doc.get("set") or {}), **dict(doc["config"])}


def apply_best(
    best_path: str | Path, params_path: str | Path = "params.yaml", *, dry_run: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Apply ``best.yaml`` to ``params_path``; returns ``{key: (old, new)}`` of the keys that change."""
    from ruamel.yaml import YAML

    doc = read_best(best_path)
    pp = Path(params_path)
    if not pp.exists():
        raise ConfigError(f"params file '{pp}' not found (run from the project root or pass --params)")
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    tree = rt.load(pp.read_text())
    changes: dict[str, tuple[Any, Any]] = {}
    for key, value in updates_of(doc).items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{best_path}: key '{key}' has no section '{part}' in {pp}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"{best_path}: key '{key}' is not in {pp}")
        old = node[parts[-1]]
        if old != value:
            changes[key] = (old, value)
            node[parts[-1]] = value
    buf = io.StringIO()
    rt.dump(tree, buf)
    text = buf.getvalue()
    try:
        params_from_dict(yaml.safe_load(text))
    except ConfigError as e:
        raise ConfigError(f"applying {best_path} to {pp} gives invalid params: {e}") from e
    if not dry_run and changes:
        with atomic_path(pp) as tmp:
            tmp.write_text(text)
    return changes
