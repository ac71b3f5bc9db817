"""Reading Zarr stores without silent holes: a missing chunk reads as the fill value (0 or NaN) and a damaged chunk
raises a codec error deep inside zarr. Both become one :class:`~stvfm.errors.DataError` naming the store, the
variable, the counts and what to do.

Also the identity of a grid: :func:`grid_digest` (sha256 of the gridded values, their shape, start and interval).
The grid stage records it in the grid store's attrs and in ``<ds>.stats.parquet``; the flow store inherits it; the
split stage copies it into ``meta.json``. Every consumer compares them (:func:`check_same_grid`), so a flow store or
split of another grid is refused with the stage to rerun instead of being used silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from stvfm.errors import DataError


def write_store(ds: Any, path: str | Path, encoding: dict[str, Any] | None = None) -> None:
    """Write ``ds`` as a Zarr v3 store with consolidated metadata, so ``xr.open_zarr(path)`` opens it at once and
    without warnings. (zarr warns that consolidated metadata is not yet part of the v3 spec; zarr-python and xarray
    read it, and a reader that does not can open the store with ``consolidated=False``.)"""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=True, encoding=encoding or {})


def check_chunks(path: str | Path, var: str, *, dataset: str | None, fix: str) -> None:
    """Refuse a store whose array ``var`` lacks chunks (a missing chunk silently reads as the fill value)."""
    import zarr

    try:
        arr = zarr.open_group(str(path), mode="r")[var]
        total, present = int(arr.nchunks), int(arr.nchunks_initialized)
    except Exception as e:  # zarr raises many types for a broken store
        raise DataError(
            f"not a readable Zarr store ({type(e).__name__}: {str(e)[:200]}); {fix}", dataset=dataset, path=str(path)
        ) from None
    if present < total:
        raise DataError(
            f"Zarr array '{var}' has {total - present} of its {total} chunks missing (they would read as "
            f"fill value {_fill(arr.fill_value)}, i.e. made-up data); {fix}",
            dataset=dataset,
            path=str(path),
        )


def _fill(v: Any) -> str:
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return repr(v)


def read_values(obj: Any, path: str | Path, *, dataset: str | None, fix: str) -> np.ndarray:
    """``obj.values`` (an xarray DataArray / lazily opened Dataset slice), with a damaged chunk as a DataError."""
    try:
        return obj.values
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # codec (RuntimeError), ValueError, OSError ... from a corrupt chunk
        raise DataError(
            f"cannot read the Zarr store: a chunk is damaged ({type(e).__name__}: {str(e)[:200]}); {fix}",
            dataset=dataset,
            path=str(path),
        ) from None


def load_dataset(ds: Any, path: str | Path, *, dataset: str | None, fix: str) -> Any:
    """``ds.load()`` with a damaged chunk as a DataError."""
    try:
        return ds.load()
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise DataError(
            f"cannot read the Zarr store: a chunk is damaged ({type(e).__name__}: {str(e)[:200]}); {fix}",
            dataset=dataset,
            path=str(path),
        ) from None


def grid_digest(values: np.ndarray, start: str, interval_minutes: int) -> str:
    """sha256 of a grid: float32 values (C order), shape, start and interval."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    h = hashlib.sha256(f"{v.shape}|{start}|{int(interval_minutes)}|".encode())
    h.update(memoryview(v).cast("B"))
    return h.hexdigest()


def check_same_grid(
    expected: str | None, got: str | None, *, dataset: str, what: str, path: str | Path, rerun: str
) -> None:
    """``got`` (the grid digest a derived output recorded) must equal ``expected`` (the grid's own)."""
    if not expected:
        raise DataError(
            f"the grid store records no grid_sha256 (written by an older version); rerun `dvc repro grid@{dataset}`",
            dataset=dataset,
            path=str(path),
        )
    if got != expected:
        raise DataError(
            f"{what} was built from another grid (grid_sha256 {str(got)[:12]}..., the grid is "
            f"{expected[:12]}...): it is stale; rerun `dvc repro {rerun}@{dataset}`",
            dataset=dataset,
            path=str(path),
        )
