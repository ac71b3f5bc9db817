"""Helpers for the data tests: a tiny project root with one raw dataset and its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.config import params_from_dict


def make_params(local: dict[str, Any] | None = None, **data: Any):
    return params_from_dict({"local_sources": local or {}, "data": data})


def write_raw(root: Path, name: str, files: dict[str, Any], kind: str, **manifest: Any) -> Path:
    """Write ``data/raw/<name>/`` with ``files`` (name -> bytes | dict of arrays for .npz) and manifest.json."""
    raw = root / "data" / "raw" / name
    raw.mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        p = raw / fname
        if isinstance(content, dict):
            np.savez(p, **content)
        elif isinstance(content, (bytes, bytearray)):
            p.write_bytes(content)
        else:
            raise TypeError(fname)
    m = {"dataset": name, "kind": kind, "files": [{"name": f} for f in files], **manifest}
    (raw / "manifest.json").write_text(json.dumps(m))
    return raw


def series(T: int = 100, H: int = 4, W: int = 3, C: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(5.0, size=(T, H, W, C)).astype(np.float32)


def npz_dataset(root: Path, name: str, flow: np.ndarray, freq: int = 60, start: str = "2024-01-01T00:00:00"):
    write_raw(
        root, name, {f"{name}.npz": {"flow": flow, "freq_minutes": np.int64(freq), "start": np.str_(start)}}, "npz"
    )
    return make_params({name: f"{name}.npz"})


def leftovers(directory: Path) -> list[str]:
    """Temp/partial entries that an atomic writer must not leave behind."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))
