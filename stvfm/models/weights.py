"""Fetching and verifying VFM weight files (``stvfm weights fetch|verify``). Only ``fetch`` uses the network.

``fetch`` downloads a backbone's published checkpoint into a cache dir (default ``$STVFM_WEIGHTS_DIR`` or
``~/.cache/stvfm/weights``): the official DINOv2 release file from dl.fbaipublicfiles.com (checked against its known
sha256 during the download), the others as timm's ``model.safetensors`` from the Hugging Face hub. The result is a
plain local file to put in ``model.weights``; training never downloads anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stvfm.errors import DownloadError, WeightsError
from stvfm.models.backbone import (
    BackboneSpec,
    fetch_target,
    get_backbone_spec,
    known_file_for,
    sha256_file,
    verify_weights_file,
)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _fetch_url(url: str, target: Path, sha256: str | None) -> None:
    import pooch

    pooch.retrieve(
        url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=target.name, path=target.parent, progressbar=True
    )


def _fetch_hf(repo_id: str, filename: str, target: Path) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(repo_id, filename, local_dir=target.parent)


def fetch_weights(
    backbone: str,
    cache_dir: str | Path | None = None,
    *,
    url_fetcher: Callable[[str, Path, str | None], None] = _fetch_url,
    hf_fetcher: Callable[[str, str, Path], None] = _fetch_hf,
) -> dict[str, Any]:
    """Download ``backbone``'s weights (if not already there) and verify them. Returns path, bytes, sha256."""
    spec: BackboneSpec = get_backbone_spec(backbone)
    if spec.fetch is None:
        raise WeightsError(
            f"backbone '{backbone}' has no download source; put a weights file anywhere and set model.weights to it"
        )
    target = fetch_target(spec, cache_dir)
    kind, loc, filename = spec.fetch
    if not target.is_file():
        if kind == "hf" and _offline():
            raise DownloadError(
                f"cannot fetch {backbone} weights from the Hugging Face hub ({loc}) while "
                f"HF_HUB_OFFLINE=1 is set; unset it (and make sure the network is reachable)"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        known = known_file_for(target, spec)
        try:
            if kind == "url":
                url_fetcher(loc, target, known.sha256 if known else None)
            else:
                hf_fetcher(loc, filename, target)
        except (WeightsError, DownloadError):
            raise
        except Exception as e:  # network/HTTP/hash errors from pooch or huggingface_hub
            raise DownloadError(
                f"could not fetch {backbone} weights from {loc}: {type(e).__name__}: {str(e)[:300]}. "
                f"Download the file by hand and set model.weights to it"
            ) from e
        if not target.is_file():
            raise DownloadError(f"fetching {backbone} weights from {loc} produced no file at {target}")
    digest = verify_weights_file(target, spec, key=str(target))
    return {
        "backbone": backbone,
        "path": str(target),
        "bytes": target.stat().st_size,
        "sha256": digest,
        "known": known_file_for(target, spec) is not None,
    }


def verify_file(path: str | Path, backbone: str | None = None, load: bool = True) -> dict[str, Any]:
    """Size/sha256 (checked when it is a known published file) and, with ``load``, the tensors it holds.

    With ``backbone`` the file is also loaded into that backbone through timm (the same path training uses).
    """
    spec = get_backbone_spec(backbone) if backbone else None
    digest = verify_weights_file(path, spec, key=str(path))
    known = known_file_for(path, spec)
    out: dict[str, Any] = {
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "sha256": digest,
        "known_file": known.filename if known else None,
        "checksum": "matches the published file" if known else "not a known published file (not checked)",
    }
    if load:
        from timm.models import load_state_dict

        try:
            sd = load_state_dict(str(path), weights_only=True)
        except Exception as e:
            raise WeightsError(
                f"'{path}' does not load as a weights file (torch.load weights_only=True / "
                f"safetensors): {type(e).__name__}: {str(e)[:300]}"
            ) from e
        out["tensors"] = len(sd)
        out["parameters"] = int(sum(v.numel() for v in sd.values() if hasattr(v, "numel")))
    if spec is not None:
        from stvfm.models.backbone import create_vit

        create_vit(spec, path)  # strict: every block and the patch/pos embeddings must come from the file
        out["loads_into"] = spec.timm_name
        out["keys"] = "every block and the patch/position embeddings come from this file"
    else:
        out["keys"] = "not checked: add --backbone B to check the file's keys against that backbone"
    return out


__all__ = ["fetch_weights", "sha256_file", "verify_file"]
