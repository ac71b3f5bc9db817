"""``data/sources.lock.json``: sha256 pins for published files that have no published checksum.

The first verified download of such a file (from the network or the mirror directory) records its sha256 here;
every later download of the same URL must match it. The file is committed, so a clone checks what the project saw.

Layout::

    {"version": 1, "files": {"<url>": {"filename": "...", "sha256": "...", "bytes": 123, "pinned": "<UTC ISO>"}}}

To accept a new upstream release on purpose, delete its entry (or the whole file) and download again.

Env ``STVFM_SOURCES_LOCK`` points the pins at another file (relative to the project root): ``make smoke`` and the tests
pin their generated fixtures there, so the project's committed lock only ever holds the published files.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvfm.errors import DataError
from stvfm.io import read_json, write_json

LOCK_NAME = "sources.lock.json"
LOCK_ENV = "STVFM_SOURCES_LOCK"
VERSION = 1


def lock_path(root: str | Path, data_root: str = "data") -> Path:
    """``<root>/<data_root>/sources.lock.json``, or the file env ``STVFM_SOURCES_LOCK`` names."""
    env = os.environ.get(LOCK_ENV)
    if env:
        p = Path(env).expanduser()
        return p if p.is_absolute() else Path(root) / p
    return Path(root) / data_root / LOCK_NAME


@dataclass
class SourcesLock:
    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: str | Path) -> SourcesLock:
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            raw = read_json(path)
            files = raw["files"]
            if not isinstance(files, dict):
                raise TypeError("'files' is not a mapping")
        except Exception as e:  # any parse problem is the same user-facing error
            raise DataError(
                f"lock file is not valid ({e}); fix it or delete it to re-pin on the next download", path=str(path)
            ) from e
        return cls(path, dict(files))

    def sha256(self, url: str) -> str | None:
        entry = self.files.get(url)
        return entry.get("sha256") if entry else None

    def pin(self, url: str, filename: str, sha256: str, nbytes: int) -> None:
        self.files[url] = {
            "filename": filename,
            "sha256": sha256,
            "bytes": int(nbytes),
            "pinned": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        }
        self.dirty = True

    def save(self) -> None:
        """Write the pins made here into the file, under a file lock, merged with what other processes pinned since
        :meth:`load` (read-modify-write of one shared file)."""
        if not self.dirty:
            return
        from filelock import FileLock

        from stvfm.io import lock_file_for

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_file_for(self.path))):
            current = SourcesLock.load(self.path).files if self.path.exists() else {}
            for url, entry in self.files.items():
                have = current.get(url)
                if have and have.get("sha256") != entry.get("sha256"):
                    raise DataError(
                        f"another download pinned {entry.get('filename')} ({url}) with sha256 "
                        f"{have.get('sha256')}, this one got {entry.get('sha256')}; the upstream file "
                        "changed between the two: check it, then delete the entry to re-pin",
                        path=str(self.path),
                    )
                current.setdefault(url, entry)
            write_json(self.path, {"version": VERSION, "files": dict(sorted(current.items()))})
            self.files = current
            self.dirty = False
