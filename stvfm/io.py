"""Atomic writes: a crash, a kill or bad input never leaves half-written outputs.

* :func:`atomic_path` writes into a temp folder beside the target (``.<name>.XXXXXXXX.tmp/``) and swaps it in: a
  file with ``os.replace``, a directory with one ``renameat2(RENAME_EXCHANGE)`` (Linux), so the target is at every
  instant either the old or the new one. Elsewhere a directory is swapped by two renames through ``.<name>.old``.
* :func:`clean_stale` removes what a killed run left beside a target (its temp folders and ``.old``); stages call it
  at their start, under :func:`target_lock`, so a temp folder of a run still in progress is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where not supported."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (AttributeError, OSError):
            _renameat2 = False
    if not _renameat2:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system / kernel cannot exchange
        return False
    raise OSError(err, f"{os.strerror(err)}: exchanging {a} and {b}")


def replace_path(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target`` (file or directory) so that ``target`` is never missing nor half-replaced;
    whatever was at ``target`` ends up at ``tmp`` (directory swap) or is gone (file)."""
    if target.is_dir() and not target.is_symlink():
        if _exchange(tmp, target):
            return
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        os.replace(old, tmp)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``target`` (file or directory); on success swap it in for ``target``.

    On any exception the temp path is removed and ``target`` is left as it was.
    """
    with temp_beside(target, suffix) as tmp:
        yield tmp
        replace_path(tmp, Path(target))


@contextlib.contextmanager
def temp_beside(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temp path for ``target`` in a fresh ``.<name>.XXXXXXXX.tmp/`` folder beside it, removed on exit (committing
    it with :func:`replace_path` is the caller's job; :func:`atomic_path` does both)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)) / (target.name + suffix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def _stale_re(name: str) -> re.Pattern[str]:
    # mkdtemp's 8 random characters exactly, so `.a.b.XXXXXXXX.tmp` (target `a.b`) never matches target `a`
    return re.compile(rf"\.{re.escape(name)}\.(?:[a-z0-9_]{{8}}\.tmp|old)")


def clean_stale(*targets: str | Path) -> list[str]:
    """Remove the temp folders (and ``.old``) that killed runs left beside ``targets``; return their names.
    Call it holding :func:`target_lock` of the stage, so no live run's temp folder is removed."""
    removed: list[str] = []
    for t in map(Path, targets):
        if not t.parent.is_dir():
            continue
        pat = _stale_re(t.name)
        for q in t.parent.iterdir():
            if pat.fullmatch(q.name):
                if q.is_dir() and not q.is_symlink():
                    shutil.rmtree(q, ignore_errors=True)
                else:
                    q.unlink(missing_ok=True)
                removed.append(q.name)
    if removed:
        log.warning("removed %d leftover temp folder(s) of an interrupted run: %s", len(removed), ", ".join(removed))
    return removed


def lock_file_for(target: str | Path) -> Path:
    """The lock file of ``target``: in the machine's temp dir (``stvfm-locks-<uid>/``), named by a hash of the
    target's absolute path, so output folders hold only outputs."""
    key = hashlib.sha256(str(Path(target).resolve()).encode()).hexdigest()[:32]
    d = Path(tempfile.gettempdir()) / f"stvfm-locks-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d / f"{Path(target).name[:60]}.{key}.lock"


@contextlib.contextmanager
def target_lock(target: str | Path, what: str = "this output") -> Iterator[None]:
    """An inter-process lock (``filelock``) on ``target`` (:func:`lock_file_for`). Waits (saying so) while another
    process holds it; released when the holder exits, even when it is killed."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_file_for(target)))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        log.warning("another process is writing %s (%s); waiting for it to finish", what, target.name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (datasets, weights, checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
