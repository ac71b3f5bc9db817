"""The data stages as plain functions (DVC entry points in ``pipelines/`` and ``stvfm data`` both call these).

``run_grid``  raw files (``data/raw/<ds>/`` + ``manifest.json``) -> canonical Dataset -> validation ->
              ``data/grid/<ds>.zarr`` (Zarr v3, chunks of about ``data.chunk_mb`` MB along time)
              + ``<ds>.stats.parquet``
``run_flow``  grid -> ``data/flow/<ds>.zarr`` (var ``dflow``, :mod:`stvfm.data.flow`)
``run_split`` grid -> ``data/split/<ds>/`` ``meta.json``, ``windows.parquet``, ``scaler.json`` (:mod:`stvfm.data.split`)

Every output is written through :func:`stvfm.io.atomic_path`: a bad input raises before anything is renamed into
place, so no partial output is left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from stvfm.config import Params
from stvfm.data import facts
from stvfm.data.flow import flow_dataset
from stvfm.data.readers import REFETCH_HINT, guess_kind, read_raw
from stvfm.data.scaler import Scaler
from stvfm.data.split import check_lengths, make_windows, published_windows, split_bounds
from stvfm.data.stats import grid_stats
from stvfm.data.store import check_chunks, check_same_grid, grid_digest, load_dataset, read_values, write_store
from stvfm.data.validate import validate_flow
from stvfm.datasets.registry import DatasetSpec, get_spec
from stvfm.errors import DataError
from stvfm.io import atomic_path, clean_stale, read_json, replace_path, target_lock, temp_beside, write_json
from stvfm.paths import DatasetPaths, dataset_paths

log = logging.getLogger(__name__)


def _paths(name: str, params: Params, root: str | Path) -> DatasetPaths:
    return dataset_paths(name, root, params.data.root)


def sha256_of(paths: list[Path]) -> str:
    """One digest over the files (a directory contributes its files in sorted order, with their relative names)."""
    h = hashlib.sha256()
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            h.update(str(q.relative_to(p) if p.is_dir() else q.name).encode())
            with open(q, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def _end_exclusive(end: Any) -> str | None:
    """Manifest ``end``: an ISO datetime is exclusive; a bare date (YYYY-MM-DD) means that whole day, inclusive."""
    if end is None:
        return None
    s = str(end)
    if len(s) == 10:
        return (dt.date.fromisoformat(s) + dt.timedelta(days=1)).isoformat()
    return s


def _read_manifest(paths: DatasetPaths, name: str) -> dict[str, Any]:
    if not paths.manifest.exists():
        raise DataError(
            f"no raw data: {paths.manifest} is missing. Run `dvc repro download@{name}` "
            f"(or `stvfm data download {name}`) first",
            dataset=name,
            path=str(paths.manifest),
        )
    try:
        m = read_json(paths.manifest)
    except ValueError as e:
        raise DataError(f"manifest is not valid JSON: {e}", dataset=name, path=str(paths.manifest)) from None
    if not isinstance(m, dict) or not m.get("files"):
        raise DataError("manifest lists no 'files'", dataset=name, path=str(paths.manifest))
    return m


def load_canonical(name: str, params: Params, root: str | Path = "."):
    """Read one dataset's raw files into the canonical form. Returns (ReadResult, spec, input files, spec_known)."""
    paths = _paths(name, params, root)
    spec: DatasetSpec = get_spec(name, params.local_sources)
    m = _read_manifest(paths, name)
    entry = params.local_sources.get(name)
    entry = ({"path": entry} if isinstance(entry, str) else dict(entry)) if entry is not None else {}
    # the data files; side files of another kind are kept apart (TLC zone polygons: `tlc-zones`)
    entries = [f if isinstance(f, dict) else {"name": str(f)} for f in m["files"]]
    files = [paths.raw_dir / f["name"] for f in entries if f.get("kind") in (None, m.get("kind"))]
    zones = [paths.raw_dir / f["name"] for f in entries if f.get("kind") == "tlc-zones"]
    for f in files + zones:
        if not f.exists():
            raise DataError(
                "file listed in manifest.json is missing; rerun the download stage", dataset=name, path=str(f)
            )
    kind = m.get("kind") or entry.get("kind") or guess_kind(files[0])
    if kind == "npz" and len(files) == 1 and files[0].is_file():
        kind = guess_kind(files[0])  # a local .npz may hold STDN `volume` or ST-SSL windows instead of `flow`
    spec_known = spec.kind in ("paper", "synthetic")

    def pick(key: str, default: Any = None) -> Any:
        v = m.get(key)
        return entry.get(key, default) if v is None else v

    try:
        res = _read_raw(files, kind, name, m, entry, spec, spec_known, zones, pick)
    except DataError as e:
        if m.get("source_kind") != "local":
            raise
        # a copy of the user's own file: re-downloading cannot help, the file itself must be fixed
        hint = REFETCH_HINT.format(ds=name)
        raise DataError(
            str(e).replace(
                hint, f"It is a copy of local_sources.{name}.path ('{m.get('source_path')}'): fix or replace that file"
            )
        ) from None
    return res, spec, files + zones, spec_known, kind


def _read_raw(files, kind, name, m, entry, spec, spec_known, zones, pick):
    interval = pick("interval_minutes", spec.interval_minutes if spec_known else None)
    grid = pick("grid", list(spec.grid) if (spec_known or kind == "stssl" or kind.startswith("trips")) else None)
    start = pick("start", spec.span[0] if spec_known else None)
    end = pick("end", spec.span[1] if spec_known else None)
    return read_raw(
        files,
        kind,
        dataset=name,
        interval_minutes=None if interval is None else int(interval),
        grid=None if grid is None else (int(grid[0]), int(grid[1])),
        start=start,
        end=_end_exclusive(end),
        bbox=pick("bbox"),
        channel_names=pick("channel_names", list(spec.channel_names) if spec_known else None),
        zones_zip=zones[0] if zones else None,
    )


def _time_chunk(shape: tuple[int, ...], chunk_mb: float) -> int:
    T = shape[0]
    frame = int(np.prod(shape[1:])) * 4
    return int(max(1, min(T, (chunk_mb * 2**20) // max(frame, 1))))


def _to_zarr(ds: xr.Dataset, var: str, tmp: Path, chunk_mb: float) -> None:
    tc = _time_chunk(ds[var].shape, chunk_mb)
    write_store(ds, tmp, encoding={var: {"chunks": (tc, *ds[var].shape[1:])}})


def write_zarr(ds: xr.Dataset, var: str, target: Path, chunk_mb: float) -> None:
    with atomic_path(target) as tmp:
        _to_zarr(ds, var, tmp, chunk_mb)


def run_grid(name: str, params: Params, root: str | Path = ".") -> dict[str, Any]:
    paths = _paths(name, params, root)
    with target_lock(paths.grid_zarr, f"the grid of '{name}'"):
        clean_stale(paths.grid_zarr, paths.grid_stats)
        return _run_grid(name, params, root, paths)


def _run_grid(name: str, params: Params, root: str | Path, paths: DatasetPaths) -> dict[str, Any]:
    t = time.perf_counter()
    res, spec, files, spec_known, kind = load_canonical(name, params, root)
    ds = res.ds
    where = ",".join(str(f) for f in files)
    # the table's grid/channels are checked where they shape the data (trip records, generated cities); a UniST file
    # decides its own interval, grid and channel, and where it differs from Table 1 the stage says so below
    validate_flow(
        ds,
        dataset=name,
        path=where,
        grid=list(spec.grid) if spec_known and kind != "unist" else None,
        channels=spec.channels if spec_known and kind != "unist" else None,
    )
    gsha = grid_digest(ds["flow"].values, str(ds.attrs.get("start")), int(ds.attrs["interval_minutes"]))
    m = _read_manifest(paths, name)
    ff, t1 = facts.file_facts(ds), facts.table1(spec)
    dis = facts.disagreements(ff, t1)
    ds.attrs.update(
        {
            "dataset": name,
            "input_sha256": sha256_of(files),
            "grid_sha256": gsha,
            "source": f"{kind}:" + ",".join(f.name for f in files),
            "source_record": facts.source_record(m.get("source_kind"), kind, [f.name for f in files]),
            "file_facts": ff,
            "table1": t1,
            "disagreements": dis,
        }
    )
    if ds.attrs.get("bbox") is None:
        ds.attrs["bbox"] = None
    stats = grid_stats(ds, res.records or None, res.dropped or None)
    stats["grid_sha256"] = gsha
    stats["interval_minutes"] = ff["interval_minutes"]
    stats["table1_interval_minutes"] = t1["interval_minutes"] if t1 else None
    stats["disagreements"] = "; ".join(dis)
    warning = dropped_warning(res.records, res.dropped, params.data.max_dropped_share)
    stats["dropped_share"] = [_share(res.records, res.dropped, str(c)) for c in stats["channel"]]
    stats["warning"] = warning or ""
    if warning:
        log.warning("grid %s: %s", name, warning)
    # The store and its stats are one output: stats are the commit mark. The old stats go first, then the store is
    # swapped in atomically, then the new stats (same grid_sha256) appear. A kill at any point leaves the old pair,
    # a store without stats (the next run redoes it), or the new pair: never new stats beside an old store.
    with temp_beside(paths.grid_zarr) as tz, temp_beside(paths.grid_stats) as ts:
        _to_zarr(ds, "flow", tz, params.data.chunk_mb)
        stats.to_parquet(ts, index=False)
        paths.grid_stats.unlink(missing_ok=True)
        replace_path(tz, paths.grid_zarr)
        replace_path(ts, paths.grid_stats)
    T, H, W, C = ds["flow"].shape
    out = {
        "dataset": name,
        "shape": [T, H, W, C],
        "kind": kind,
        "seconds": round(time.perf_counter() - t, 2),
        "records": res.records,
        "dropped": res.dropped,
        "grid_sha256": gsha,
        "file_facts": ff,
        "table1": t1,
        "disagreements": dis,
    }
    if dis:
        log.warning("grid %s", facts.summary_line(name, dis))
    if warning:
        out["warning"] = warning
    log.info("grid %s: %s", name, out)
    return out


def _share(records: dict[str, int] | None, dropped: dict[str, int] | None, ch: str) -> float:
    n = (records or {}).get(ch, 0) + (dropped or {}).get(ch, 0)
    return round((dropped or {}).get(ch, 0) / n, 6) if n else 0.0


def dropped_warning(records: dict[str, int] | None, dropped: dict[str, int] | None, limit: float) -> str | None:
    """A warning when more than ``limit`` (``data.max_dropped_share``) of a channel's trip endpoints were dropped."""
    over = {ch: _share(records, dropped, ch) for ch in (dropped or {}) if _share(records, dropped, ch) > limit}
    if not over:
        return None
    parts = ", ".join(
        f"{ch} {100 * v:.1f}% ({dropped[ch]} of {records.get(ch, 0) + dropped[ch]})" for ch, v in over.items()
    )
    return (
        f"WARNING: dropped {parts} trip endpoints (outside the bbox or span, or without time/coordinates), more "
        f"than data.max_dropped_share = {limit:g}; check bbox/start/end"
    )


def _open_store(path, var: str, name: str, stage: str) -> tuple[xr.Dataset, str]:
    """The ``stage`` store at ``path`` holding ``var``, and the fix to name in errors about it."""
    fix = f"rerun `dvc repro {stage}@{name}`"
    if not path.exists():
        raise DataError(f"no {stage}: run `dvc repro {stage}@{name}` first", dataset=name, path=str(path))
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except Exception as e:
        raise DataError(f"cannot open the {stage} store ({e}); {fix}", dataset=name, path=str(path)) from None
    if var not in ds.data_vars:
        raise DataError(f"the {stage} store has no variable '{var}'; {fix}", dataset=name, path=str(path))
    return ds, fix


def open_grid(paths: DatasetPaths, name: str) -> xr.Dataset:
    ds, fix = _open_store(paths.grid_zarr, "flow", name, "grid")
    check_chunks(paths.grid_zarr, "flow", dataset=name, fix=fix)
    return ds


def open_flow(paths: DatasetPaths, name: str, grid: xr.Dataset) -> xr.Dataset:
    """The flow store, checked against ``grid`` (grid_sha256, T, shape); a stale one names the stage to rerun."""
    f, fix = _open_store(paths.flow_zarr, "dflow", name, "flow")
    check_same_grid(
        grid.attrs.get("grid_sha256"),
        f.attrs.get("grid_sha256"),
        dataset=name,
        what="the flow store",
        path=paths.flow_zarr,
        rerun="flow",
    )
    if tuple(f["dflow"].shape) != tuple(grid["flow"].shape):
        raise DataError(
            f"the flow store has shape {tuple(f['dflow'].shape)} but the grid {tuple(grid['flow'].shape)} "
            f"(T, H, W, C); {fix}",
            dataset=name,
            path=str(paths.flow_zarr),
        )
    check_chunks(paths.flow_zarr, "dflow", dataset=name, fix=fix)
    return f


def run_flow(name: str, params: Params, root: str | Path = ".") -> dict[str, Any]:
    paths = _paths(name, params, root)
    with target_lock(paths.flow_zarr, f"the flow of '{name}'"):
        clean_stale(paths.flow_zarr)
        grid = load_dataset(open_grid(paths, name), paths.grid_zarr, dataset=name, fix=f"rerun `dvc repro grid@{name}`")
        fds = flow_dataset(grid)
        fds.attrs["grid_sha256"] = grid.attrs.get("grid_sha256")
        write_zarr(fds, "dflow", paths.flow_zarr, params.data.chunk_mb)
    return {"dataset": name, "shape": list(fds["dflow"].shape), "grid_sha256": fds.attrs["grid_sha256"]}


def run_split(name: str, params: Params, root: str | Path = ".") -> dict[str, Any]:
    paths = _paths(name, params, root)
    with target_lock(paths.split_dir, f"the split of '{name}'"):
        clean_stale(paths.split_dir)
        return _run_split(name, params, paths)


def _run_split(name: str, params: Params, paths: DatasetPaths) -> dict[str, Any]:
    d = params.data
    grid = open_grid(paths, name)
    open_flow(paths, name, grid)
    T, H, W, C = grid["flow"].shape
    if d.split == "published":  # the file's own train/val/test windows, as UniST feeds them
        bounds, w = published_windows(
            grid.attrs.get("published_windows"),
            int(T),
            d.history,
            d.horizon,
            dataset=name,
            path=str(paths.grid_zarr),
            source=grid.attrs.get("source"),
        )
    else:
        bounds = split_bounds(T, d.split)
        check_lengths(bounds, d.history, d.horizon, fractions=d.split, dataset=name, path=str(paths.grid_zarr))
        w = make_windows(bounds, d.history, d.horizon)
    a, b = bounds["train"]
    train = read_values(
        grid["flow"].isel(time=slice(a, b)), paths.grid_zarr, dataset=name, fix=f"rerun `dvc repro grid@{name}`"
    )
    scaler = Scaler.fit(train, d.scaler, channel_axis=-1)  # train only (never UniST's min-max over all splits)
    times = grid["time"].values
    w["time"] = pd.to_datetime(times[w["t0"].to_numpy() + d.history])
    spec = get_spec(name, params.local_sources)
    ff = grid.attrs.get("file_facts") or facts.file_facts(grid)
    t1 = grid.attrs.get("table1") if "table1" in grid.attrs else facts.table1(spec)
    meta = {
        "dataset": name,
        "T": int(T),
        "history": d.history,
        "horizon": d.horizon,
        "bounds": {k: [int(lo), int(hi)] for k, (lo, hi) in bounds.items()},
        "n_windows": {k: int((w["split"] == k).sum()) for k in bounds},
        "grid": [int(H), int(W)],
        "channels": int(C),
        "channel_names": [str(c) for c in grid["channel"].values],
        "interval_minutes": int(grid.attrs["interval_minutes"]),
        "start": str(np.datetime_as_string(times[0], unit="s")),
        "scale_1e3": bool(spec.scale_1e3),
        "scaler": d.scaler,
        "split": d.split if isinstance(d.split, str) else list(d.split),
        "protocol": "published" if d.split == "published" else "ratio",
        "source": grid.attrs.get("source_record")
        or facts.source_record(None, str(grid.attrs.get("source", "")).split(":")[0], []),
        "table1": t1,
        "file_facts": ff,
        "disagreements": list(grid.attrs.get("disagreements") or facts.disagreements(ff, t1)),
        "input_sha256": grid.attrs.get("input_sha256"),
        "grid_sha256": grid.attrs.get("grid_sha256"),
    }
    with atomic_path(paths.split_dir) as tmp:
        tmp.mkdir()
        w.to_parquet(tmp / "windows.parquet", index=False)
        scaler.save(tmp / "scaler.json")
        write_json(tmp / "meta.json", meta)
    return meta
