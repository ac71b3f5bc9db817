"""The download stage: fill ``data/raw/<name>/`` with the dataset's files and a ``manifest.json``.

* Paper datasets (``kind == "paper"``, and ``<name>-trips``): each :class:`~stvfm.datasets.registry.Source` is looked
  up, in order, in the mirror directories (``data.mirror_dir``, then env ``STVFM_DATA_MIRROR``; as ``<mirror>/<file>``
  or ``<mirror>/<dataset>/<file>``), then in an existing ``data/raw/<name>/<file>``, then fetched with
  :func:`pooch.retrieve` into the download cache ``data/raw/.downloads/`` (resumable via HTTP Range, progress bar
  via tqdm) and hard-linked (or copied) into place. Every file is checked against its published sha256, or else its
  pin in ``data/sources.lock.json``; a file without either is pinned there after the download completes.
* ``synthetic`` / ``synthetic-<name>``: the virtual city (:mod:`stvfm.datasets.synthetic`) as ``trips.parquet``.
* ``local_sources`` entries: the user's file (``.npz``, ``.parquet``/``.csv`` trip records) or ``.zarr`` store is
  copied into ``data/raw/<name>/``; reader kind from the extension (npz, trips, zarr).

``data/raw/<name>`` is written atomically: on any error nothing of it is left (an older complete copy stays).
Only the download cache keeps the partial bytes of an interrupted transfer, so the next run resumes it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stvfm.config import Params
from stvfm.datasets.lock import SourcesLock, lock_path
from stvfm.datasets.registry import DatasetSpec, Source, get_spec
from stvfm.errors import DataError, DownloadError
from stvfm.io import atomic_path, clean_stale, sha256_file, target_lock, write_json
from stvfm.paths import dataset_paths

log = logging.getLogger(__name__)

MIRROR_ENV = "STVFM_DATA_MIRROR"
CACHE_DIR = ".downloads"  # under data/raw/: verified downloads + resumable .part files
_SHAPE_KEYS = ("grid", "interval_minutes", "channels", "channel_names", "start", "end", "bbox")
LOCAL_KINDS = {".npz": "npz", ".parquet": "trips", ".csv": "trips", ".zarr": "zarr"}
_TIMEOUT = (15, 120)  # connect, read (s)


# ---------------------------------------------------------------------------------------------------------- helpers


def sha256_tree(path: str | Path) -> tuple[str, int]:
    """sha256 of a directory (sorted relative paths and file hashes) and its total size."""
    root = Path(path)
    h, total = hashlib.sha256(), 0
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n".encode())
        total += p.stat().st_size
    return h.hexdigest(), total


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _rel(path: Path, root: Path) -> str:
    """A path for messages and manifests: relative to the project root when inside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def mirror_dirs(params: Params, root: Path) -> list[Path]:
    """The mirror directories to look in, in order: ``data.mirror_dir`` then ``$STVFM_DATA_MIRROR``."""
    out: list[Path] = []
    for d in (params.data.mirror_dir, os.environ.get(MIRROR_ENV) or None):
        if d:
            p = Path(d).expanduser()
            p = p if p.is_absolute() else root / p
            if p not in out:
                out.append(p)
    return out


# ------------------------------------------------------------------------------------------------------ downloader
class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes from ``part`` with HTTP Range.

    Bytes are appended to ``part`` (kept in the download cache) as they arrive; an interrupted transfer leaves it
    there and the next call asks the server for the rest. A server that ignores Range gets a fresh download.
    When complete (size equal to Content-Length when the server gives one), ``part`` is moved onto ``output_file``.
    """

    def __init__(self, part: Path, progressbar: bool | None = None, chunk_size: int = 1 << 16,
                 timeout: tuple[float, float] = _TIMEOUT):
        self.part = Path(part)
        self.progressbar = progressbar
        self.chunk_size = chunk_size
        self.timeout = timeout

    def __call__(self, url: str, output_file: str, pooch: Any = None, check_only: bool = False) -> Any:
        import requests
        from tqdm.auto import tqdm

        if check_only:
            r = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return r.status_code == 200
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True) as r:
            if offset and r.status_code == 416:  # nothing left to send (or the part is stale): start over
                self.part.unlink()
                return self(url, output_file, pooch)
            r.raise_for_status()
            if offset and r.status_code != 206:
                offset = 0  # the server ignored Range
            length = r.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(self.part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                desc=self.part.name.removesuffix(".part"),
                disable=(not self.progressbar) if self.progressbar is not None else None,
            ) as bar:
                for chunk in r.iter_content(chunk_size=self.chunk_size):
                    f.write(chunk)
                    bar.update(len(chunk))
        size = self.part.stat().st_size
        if total is not None and size != total:
            raise requests.exceptions.ChunkedEncodingError(
                f"transfer ended after {size} of {total} bytes; run again to resume")
        os.replace(self.part, output_file)
        return None


# ------------------------------------------------------------------------------------------------------ the stage
def run_download(name: str, params: Params, root: str | Path) -> Path:
    """Write ``data/raw/<name>/`` (files + ``manifest.json``) for dataset ``name``; return that directory."""
    root = Path(root).resolve()
    paths = dataset_paths(name, root, params.data.root)  # refuses a name that could leave data/raw/
    spec = get_spec(name, params.local_sources)
    base = {"dataset": name, "title": spec.title, "like": spec.like, "grid": list(spec.grid),
            "interval_minutes": spec.interval_minutes, "channels": spec.channels,
            "channel_names": list(spec.channel_names), "start": f"{spec.span[0]}T00:00:00",
            "end": (dt.date.fromisoformat(spec.span[1]) + dt.timedelta(days=1)).isoformat() + "T00:00:00",
            "bbox": list(spec.bbox) if spec.bbox else None}
    # the stage's one output: data/raw/<name> (a name can never point elsewhere: stvfm.config.check_dataset_name)
    raw_parent = (root / params.data.root / "raw").resolve()
    if paths.raw_dir.parent.resolve() != raw_parent or paths.raw_dir.name != name:
        raise DataError(f"refusing to write {paths.raw_dir}: outside {raw_parent}", dataset=name)
    if spec.kind == "local":
        _local_source(spec, root)  # a missing/unreadable entry is refused before anything is created
    # one download of a dataset at a time (a second waits, then finds the files in place); leftovers of a killed
    # run are removed under the lock, so a live run's temp folder is never touched
    with target_lock(paths.raw_dir, f"the raw files of '{name}'"):
        clean_stale(paths.raw_dir)
        return _write_raw(name, spec, params, root, paths, base)


def _write_raw(name: str, spec: DatasetSpec, params: Params, root: Path, paths, base: dict[str, Any]) -> Path:
    with atomic_path(paths.raw_dir) as tmp:
        tmp.mkdir(parents=True)
        if spec.kind == "synthetic":
            extra = _make_synthetic(spec, params, tmp)
        elif spec.kind == "local":
            extra = _copy_local(spec, params, root, tmp)
        else:
            extra = _fetch_sources(spec, params, root, paths.raw_dir, tmp)
        manifest = {**base, **extra, "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()}
        write_json(tmp / "manifest.json", manifest)
    log.info("download %s: wrote %s (%d file(s))", name, _rel(paths.raw_dir, root), len(manifest["files"]))
    return paths.raw_dir


def _make_synthetic(spec: DatasetSpec, params: Params, out: Path) -> dict[str, Any]:
    from stvfm.datasets.synthetic import generate_trips

    f = out / "trips.parquet"
    info = generate_trips(spec, params.data.synthetic, f)
    d = asdict(info)
    d["grid"], d["bbox"], d["channel_names"] = list(info.grid), list(info.bbox), list(info.channel_names)
    return {"kind": "trips", "source_kind": "synthetic",
            "files": [{"name": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size, "url": None}], **d}


def _local_source(spec: DatasetSpec, root: Path) -> tuple[str, Path, str]:
    """(the path as given, the resolved path, reader kind) of a local_sources entry; checked before anything is
    written."""
    given = str(spec.local_path)
    src = Path(given).expanduser()
    src = src if src.is_absolute() else root / src
    where = f"params.yaml local_sources.{spec.name}.path"
    if not src.exists():
        raise DataError(f"local file '{given}' not found (looked at {src}); fix {where} "
                        "(relative paths are relative to the project root)", dataset=spec.name, path=given)
    kind = LOCAL_KINDS.get(src.suffix.lower())
    if kind is None or (kind == "zarr") != src.is_dir():
        raise DataError(f"cannot read '{src.name}': {where} must be an .npz or .parquet/.csv file or a .zarr "
                        "directory", dataset=spec.name, path=given)
    return given, src, kind


def _copy_local(spec: DatasetSpec, params: Params, root: Path, out: Path) -> dict[str, Any]:
    given, src, kind = _local_source(spec, root)
    dst = out / src.name
    if src.is_dir():
        shutil.copytree(src, dst)
        digest, nbytes = sha256_tree(dst)
    else:
        shutil.copy2(src, dst)
        digest, nbytes = sha256_file(dst), dst.stat().st_size
    extra: dict[str, Any] = {"kind": kind, "source_kind": "local", "source_path": given,
                             "files": [{"name": dst.name, "sha256": digest, "bytes": nbytes, "url": None}]}
    # The file describes itself (npz: freq_minutes/start; zarr: attrs): the table's values of `like` would be wrong
    # here, so only what the local_sources entry states goes into the manifest (trip records need bbox, grid,
    # interval_minutes, start, end there).
    extra.update(dict.fromkeys(_SHAPE_KEYS))
    entry = params.local_sources.get(spec.name)
    if isinstance(entry, dict):
        extra.update({k: entry[k] for k in _SHAPE_KEYS if k in entry})
    return extra


def _fetch_sources(spec: DatasetSpec, params: Params, root: Path, raw_dir: Path, out: Path) -> dict[str, Any]:
    if not spec.sources:
        raise DataError("no sources to download in the dataset table", dataset=spec.name)
    lock = SourcesLock.load(lock_path(root, params.data.root))
    mirrors = mirror_dirs(params, root)
    cache = raw_dir.parent / CACHE_DIR
    files = []
    for src in spec.sources:
        path = _resolve_one(spec.name, src, lock, mirrors, raw_dir, cache, root)
        _link_or_copy(path, out / src.filename)
        files.append({"name": src.filename, "sha256": src.sha256 or lock.sha256(src.url),
                      "bytes": path.stat().st_size, "url": src.url, "kind": src.kind})
    lock.save()
    return {"kind": spec.sources[0].kind, "source_kind": "trips" if spec.name.endswith("-trips") else "paper",
            "files": files}


def _resolve_one(dataset: str, src: Source, lock: SourcesLock, mirrors: list[Path], raw_dir: Path, cache: Path,
                 root: Path) -> Path:
    """Find or fetch one source file, verify it, pin it if it had no checksum; return its verified path."""
    expected = src.sha256 or lock.sha256(src.url)
    origin = "the dataset table" if src.sha256 else "data/sources.lock.json"
    if not expected:
        log.warning("%s: upstream publishes no checksum and data/sources.lock.json has no pin for it: trusting this "
                    "first copy (trust on first use); its sha256 is pinned now: commit data/sources.lock.json",
                    src.filename)
    candidates = [m / src.filename for m in mirrors] + [m / dataset / src.filename for m in mirrors]
    candidates.append(raw_dir / src.filename)
    for cand in candidates:
        if cand.is_file():
            got = sha256_file(cand)
            if expected and got != expected:
                raise DownloadError(
                    f"checksum mismatch for '{src.filename}' at {_rel(cand, root)}: sha256 {got}, expected {expected} "
                    f"(from {origin}). Replace it with the file from {src.url}, or delete its entry in "
                    "data/sources.lock.json if upstream really changed it", dataset=dataset, path=src.filename)
            if not expected:
                lock.pin(src.url, src.filename, got, cand.stat().st_size)
            log.info("%s: using %s", src.filename, _rel(cand, root))
            return cand
    return _fetch(dataset, src, expected, origin, lock, mirrors, raw_dir, cache, root)


def _fetch(dataset: str, src: Source, expected: str | None, origin: str, lock: SourcesLock, mirrors: list[Path],
           raw_dir: Path, cache: Path, root: Path) -> Path:
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)  # we log the download ourselves
    log.info("downloading %s from %s", src.filename, src.url)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / src.filename
    part = cache / (src.filename + ".part")
    try:
        got_path = Path(pooch.retrieve(src.url, known_hash=f"sha256:{expected}" if expected else None,
                                       fname=src.filename, path=cache, downloader=ResumableDownloader(part)))
    except ValueError as e:  # pooch: hash mismatch (the temp file is already gone)
        target.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        raise DownloadError(f"checksum mismatch for '{src.filename}' downloaded from {src.url}: {e} "
                            f"(expected sha256 from {origin}); nothing was kept", dataset=dataset,
                            path=src.filename) from e
    except (requests.exceptions.RequestException, OSError) as e:
        if mirrors:
            place = f"put it at {' or '.join(str(m / src.filename) for m in mirrors)}"
        else:
            place = (f"put it in a folder and set data.mirror_dir in params.yaml (or env {MIRROR_ENV}) to that "
                     f"folder, or put it at {_rel(raw_dir / src.filename, root)} and run "
                     f"`python -m pipelines.download {dataset}` (dvc repro empties that folder first)")
        resume = " (the partial download is kept; run again to resume)" if part.exists() else ""
        raise DownloadError(f"could not download '{src.filename}' from {src.url}: {_short(e)}{resume}. "
                            f"Offline? Get the file by hand and {place}", dataset=dataset, path=src.filename) from e
    if not expected:
        lock.pin(src.url, src.filename, sha256_file(got_path), got_path.stat().st_size)
    return got_path


def _short(e: BaseException) -> str:
    """The reason of a failed request in a few words (no urllib3 pool dumps)."""
    import requests

    if isinstance(e, requests.exceptions.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code} {e.response.reason}"
    if isinstance(e, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(e, requests.exceptions.ConnectionError):
        reason = getattr(e.args[0], "reason", None) if e.args else None
        return f"no connection ({type(reason).__name__ if reason is not None else 'connection error'})"
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."
