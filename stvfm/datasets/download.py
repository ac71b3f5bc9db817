"""The download stage: fill ``data/raw/<name>/`` with the dataset's files and a ``manifest.json``.

* Paper datasets (``kind == "paper"``, and ``<name>-trips``): each :class:`~stvfm.datasets.registry.Source` is looked
  up, in order, in the mirror directories (``data.mirror_dir``, then env ``STVFM_DATA_MIRROR``; as ``<mirror>/<file>``
  or ``<mirror>/<dataset>/<file>``), then in an existing ``data/raw/<name>/<file>``, then fetched with
  :func:`pooch.retrieve` into the download cache ``data/raw/.downloads/`` (resumable via HTTP Range, progress bar
  via tqdm) and hard-linked (or copied) into place. Every file is checked against its published sha256, or else its
  pin in ``data/sources.lock.json`` (env ``STVFM_SOURCES_LOCK``: another lock file); a file without either is pinned
  there after the download completes. A file UniST publishes may also come out of the published archive (the whole
  dataset folder as one zip, as UniST's README offers it): any ``*.zip`` in a mirror directory, or the download cache,
  that holds ``<Name>_short.json`` (at any depth), or the archive at env ``STVFM_UNIST_ARCHIVE_URL`` when the file's
  own URL cannot be fetched. The member is extracted into the cache and verified like a loose file.
* Before anything is pinned or kept in the cache, the body must be the format its name promises
  (:mod:`stvfm.datasets.sniff`): an HTML page, a truncated JSON file, an empty file are refused with one line.
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
import tempfile
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
ARCHIVE_ENV = "STVFM_UNIST_ARCHIVE_URL"  # the published UniST folder as one zip (no stable direct link is published)
ARCHIVE_FILENAME = "UniST-dataset.zip"  # its name in the download cache
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

    def __init__(
        self,
        part: Path,
        progressbar: bool | None = None,
        chunk_size: int = 1 << 16,
        timeout: tuple[float, float] = _TIMEOUT,
        check=None,
    ):
        self.part = Path(part)
        self.check = check  # check(path) -> None or raises: the body's format, before it is kept anywhere
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
            with (
                open(self.part, "ab" if offset else "wb") as f,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    leave=False,
                    desc=self.part.name.removesuffix(".part"),
                    disable=(not self.progressbar) if self.progressbar is not None else None,
                ) as bar,
            ):
                for chunk in r.iter_content(chunk_size=self.chunk_size):
                    f.write(chunk)
                    bar.update(len(chunk))
        size = self.part.stat().st_size
        if total is not None and size != total:
            raise requests.exceptions.ChunkedEncodingError(
                f"transfer ended after {size} of {total} bytes; run again to resume"
            )
        if self.check is not None:
            try:
                self.check(self.part)
            except BaseException:
                self.part.unlink(missing_ok=True)  # a wrong body is not resumed either
                raise
        os.replace(self.part, output_file)
        return None


# ------------------------------------------------------------------------------------------------------ the stage
def run_download(name: str, params: Params, root: str | Path) -> Path:
    """Write ``data/raw/<name>/`` (files + ``manifest.json``) for dataset ``name``; return that directory."""
    root = Path(root).resolve()
    paths = dataset_paths(name, root, params.data.root)  # refuses a name that could leave data/raw/
    spec = get_spec(name, params.local_sources)
    base = {
        "dataset": name,
        "title": spec.title,
        "like": spec.like,
        "grid": list(spec.grid),
        "interval_minutes": spec.interval_minutes,
        "channels": spec.channels,
        "channel_names": list(spec.channel_names),
        "start": f"{spec.span[0]}T00:00:00",
        "end": (dt.date.fromisoformat(spec.span[1]) + dt.timedelta(days=1)).isoformat() + "T00:00:00",
        "bbox": list(spec.bbox) if spec.bbox else None,
    }
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
    return {
        "kind": "trips",
        "source_kind": "synthetic",
        "files": [{"name": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size, "url": None}],
        **d,
    }


def _local_source(spec: DatasetSpec, root: Path) -> tuple[str, Path, str]:
    """(the path as given, the resolved path, reader kind) of a local_sources entry; checked before anything is
    written."""
    given = str(spec.local_path)
    src = Path(given).expanduser()
    src = src if src.is_absolute() else root / src
    where = f"params.yaml local_sources.{spec.name}.path"
    if not src.exists():
        raise DataError(
            f"local file '{given}' not found (looked at {src}); fix {where} "
            "(relative paths are relative to the project root)",
            dataset=spec.name,
            path=given,
        )
    kind = LOCAL_KINDS.get(src.suffix.lower())
    if kind is None or (kind == "zarr") != src.is_dir():
        raise DataError(
            f"cannot read '{src.name}': {where} must be an .npz or .parquet/.csv file or a .zarr directory",
            dataset=spec.name,
            path=given,
        )
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
    extra: dict[str, Any] = {
        "kind": kind,
        "source_kind": "local",
        "source_path": given,
        "files": [{"name": dst.name, "sha256": digest, "bytes": nbytes, "url": None}],
    }
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
        files.append(
            {
                "name": src.filename,
                "sha256": src.sha256 or lock.sha256(src.url),
                "bytes": path.stat().st_size,
                "url": src.url,
                "kind": src.kind,
            }
        )
    lock.save()
    return {
        "kind": spec.sources[0].kind,
        "source_kind": "trips" if spec.name.endswith("-trips") else "paper",
        "files": files,
    }


def _check_body(dataset: str, filename: str, path: Path, where: str, url: str | None) -> None:
    """Refuse a body that is not the format ``filename`` promises (HTML page, truncated JSON, empty file ...)."""
    from stvfm.datasets.sniff import problem

    what = problem(path, filename)
    if what:
        fix = f"get the real file from {url}" if url else "replace it with the real file"
        raise DownloadError(
            f"'{filename}' {where} is {what}; refused: nothing was pinned or cached ({fix})",
            dataset=dataset,
            path=filename,
        )


def _resolve_one(
    dataset: str, src: Source, lock: SourcesLock, mirrors: list[Path], raw_dir: Path, cache: Path, root: Path
) -> Path:
    """Find or fetch one source file, verify it, pin it if it had no checksum; return its verified path."""
    expected = src.sha256 or lock.sha256(src.url)
    origin = "the dataset table" if src.sha256 else _rel(lock.path, root)
    if not expected:
        log.warning(
            "%s: upstream publishes no checksum and %s has no pin for it: trusting this first copy (trust on "
            "first use) once it reads as the right format; its sha256 is pinned now: commit that file",
            src.filename,
            _rel(lock.path, root),
        )
    candidates = [m / src.filename for m in mirrors] + [m / dataset / src.filename for m in mirrors]
    candidates.append(raw_dir / src.filename)
    for cand in candidates:
        if cand.is_file():
            return _verified(
                dataset, src, cand, f"at {_rel(cand, root)}", expected, origin, lock, root, origin_dir=cand.parent
            )
    if src.kind == "unist":
        member = _from_archives(dataset, src, _archives(mirrors, dataset, cache), cache, root)
        if member is not None:
            path, where, zpath = member
            return _verified(
                dataset, src, path, where, expected, origin, lock, root, cached=True, origin_dir=zpath.parent
            )
    try:
        return _fetch(dataset, src, expected, origin, lock, mirrors, raw_dir, cache, root)
    except DownloadError as e:
        archive_url = os.environ.get(ARCHIVE_ENV)
        if src.kind != "unist" or not archive_url or "could not download" not in str(e):
            raise
        log.info(
            "%s: its own URL failed (%s); trying the published archive %s", src.filename, _short_msg(e), archive_url
        )
        zpath = _fetch_archive(dataset, archive_url, lock, cache, root)
        member = _from_archives(dataset, src, [zpath], cache, root)
        if member is None:
            raise DownloadError(
                f"the archive {archive_url} (env {ARCHIVE_ENV}) holds no '{src.filename}'",
                dataset=dataset,
                path=src.filename,
            ) from None
        return _verified(dataset, src, member[0], member[1], expected, origin, lock, root, cached=True)


def _short_msg(e: BaseException) -> str:
    msg = str(e)
    return msg if len(msg) <= 120 else msg[:117] + "..."


def _verified(
    dataset: str,
    src: Source,
    path: Path,
    where: str,
    expected: str | None,
    origin: str,
    lock: SourcesLock,
    root: Path,
    cached: bool = False,
    origin_dir: Path | None = None,
) -> Path:
    """``path`` checked: format (always before a pin), then sha256 against ``expected`` or pinned now. A refused file
    that was extracted into the cache (``cached``) is removed."""
    try:
        got = sha256_file(path)
        if expected and got != expected:
            from stvfm.datasets.sniff import problem

            what = problem(path, src.filename)
            raise DownloadError(
                f"checksum mismatch for '{src.filename}' {where}: sha256 {got}, expected {expected} "
                f"(from {origin}){f'; the file is {what}' if what else ''}. Replace it with the file from {src.url}, "
                f"or delete its entry in {origin} if upstream really changed it",
                dataset=dataset,
                path=src.filename,
            )
        if not expected:
            _check_body(dataset, src.filename, path, where, src.url)
            _refuse_fixture_pin(dataset, src, path, origin_dir, lock, root)
            lock.pin(src.url, src.filename, got, path.stat().st_size)
    except DownloadError:
        if cached:
            path.unlink(missing_ok=True)
        raise
    log.info("%s: using %s", src.filename, where)
    return path


def _refuse_fixture_pin(
    dataset: str, src: Source, path: Path, origin_dir: Path | None, lock: SourcesLock, root: Path
) -> None:
    """Generated fixtures (a folder with the marker `stvfm fixtures` writes) never get pinned into the project's own
    lock file: only into the one env STVFM_SOURCES_LOCK names."""
    from stvfm.datasets.lock import LOCK_ENV
    from stvfm.datasets.unist_fixtures import MARKER

    if os.environ.get(LOCK_ENV) or origin_dir is None:
        return
    for d in (origin_dir, origin_dir.parent):
        if (d / MARKER).is_file():
            raise DownloadError(
                f"'{src.filename}' at {_rel(origin_dir, root)} is a generated fixture ({_rel(d / MARKER, root)}"
                f"), not the published file: refusing to pin it into {_rel(lock.path, root)}. Set env "
                f"{LOCK_ENV} to another lock file to use fixtures (as `make smoke` does)",
                dataset=dataset,
                path=src.filename,
            )


def _archives(mirrors: list[Path], dataset: str, cache: Path) -> list[Path]:
    """The zip archives that may hold a UniST file: in the mirror dirs (and their <dataset>/), then the cache."""
    out: list[Path] = []
    for d in [*mirrors, *(m / dataset for m in mirrors), cache]:
        if d.is_dir():
            out += sorted(p for p in d.glob("*.zip") if p.is_file())
    return out


def _from_archives(
    dataset: str, src: Source, archives: list[Path], cache: Path, root: Path
) -> tuple[Path, str, Path] | None:
    """Extract ``src.filename`` from the first archive holding it (at any depth) into the cache; (path, where)."""
    import zipfile

    for z in archives:
        try:
            with zipfile.ZipFile(z) as zf:
                names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == src.filename and "__MACOSX" not in n]
                if not names:
                    continue
                member = min(names, key=len)
                where = f"from the archive {_rel(z, root)} ({member})"
                cache.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{src.filename}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as fout, zf.open(member) as fin:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                    _check_body(dataset, src.filename, Path(tmp), where, src.url)  # nothing wrong enters the cache
                    target = cache / src.filename
                    os.replace(tmp, target)
                finally:
                    Path(tmp).unlink(missing_ok=True)
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # a damaged archive (CRC error, truncated member)
            raise DownloadError(
                f"cannot read '{src.filename}' from the archive {_rel(z, root)}: {e}; replace the archive",
                dataset=dataset,
                path=src.filename,
            ) from None
        return target, where, z
    return None


def _fetch_archive(dataset: str, url: str, lock: SourcesLock, cache: Path, root: Path) -> Path:
    """Download the published archive into the cache (resumable; refused before it is kept unless it is a zip)."""
    src = Source(url=url, filename=ARCHIVE_FILENAME, kind="unist-archive", note=f"env {ARCHIVE_ENV}")
    expected = lock.sha256(url)
    path = _fetch(dataset, src, expected, lock.path.name, lock, [], cache, cache, root)
    return path


def _fetch(
    dataset: str,
    src: Source,
    expected: str | None,
    origin: str,
    lock: SourcesLock,
    mirrors: list[Path],
    raw_dir: Path,
    cache: Path,
    root: Path,
) -> Path:
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)  # we log the download ourselves
    log.info("downloading %s from %s", src.filename, src.url)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / src.filename
    part = cache / (src.filename + ".part")

    def check(path: Path) -> None:
        if not expected:  # a pinned file is judged by its checksum
            _check_body(dataset, src.filename, path, f"downloaded from {src.url}", None)

    try:
        got_path = Path(
            pooch.retrieve(
                src.url,
                known_hash=f"sha256:{expected}" if expected else None,
                fname=src.filename,
                path=cache,
                downloader=ResumableDownloader(part, check=check),
            )
        )
    except ValueError as e:  # pooch: hash mismatch (the temp file is already gone)
        target.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for '{src.filename}' downloaded from {src.url}: {e} "
            f"(expected sha256 from {origin}); nothing was kept",
            dataset=dataset,
            path=src.filename,
        ) from e
    except (requests.exceptions.RequestException, OSError) as e:
        if mirrors:
            place = f"put it at {' or '.join(str(m / src.filename) for m in mirrors)}"
        else:
            place = (
                f"put it in a folder and set data.mirror_dir in params.yaml (or env {MIRROR_ENV}) to that "
                f"folder, or put it at {_rel(raw_dir / src.filename, root)} and run "
                f"`python -m pipelines.download {dataset}` (dvc repro empties that folder first)"
            )
        resume = " (the partial download is kept; run again to resume)" if part.exists() else ""
        raise DownloadError(
            f"could not download '{src.filename}' from {src.url}: {_short(e)}{resume}. "
            f"Offline? Get the file by hand and {place}",
            dataset=dataset,
            path=src.filename,
        ) from e
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
