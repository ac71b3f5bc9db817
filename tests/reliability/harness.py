"""The hostile-user harness: a throw-away project (params.yaml + data/) beside an unrelated folder (``outside/``), the
DVC stage entry points run on it exactly as `dvc repro` runs them, and a hash of both trees before and after.

Every bad-input test asserts: exit code 2, one stderr line naming the file/key, and no byte changed outside the
stage's own output (for a refused input: nowhere at all)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BASE_PARAMS: dict[str, Any] = {
    "datasets": ["synthetic"],
    "local_sources": {},
    "data": {"synthetic": {"span_days": 7}},
    "model": {"backbone": "vit_tiny", "allow_random_init": True, "vfm_blocks": 1},
    "train": {"epochs": 1, "use_ray": False, "max_batches_per_epoch": 1},
}


def tree_hash(*roots: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and '<dir>' for every folder) under ``roots``."""
    out: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            key = f"{root.name}/{p.relative_to(root).as_posix()}"
            if p.is_symlink():
                out[key] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[key] = "<dir>"
            else:
                out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@dataclass
class Project:
    root: Path
    outside: Path

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    def write_params(self, **sections: Any) -> None:
        p = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE_PARAMS.items()}
        for k, v in sections.items():
            if isinstance(v, dict) and isinstance(p.get(k), dict):
                p[k] = {**p[k], **v}
            else:
                p[k] = v
        self.params_file.write_text(yaml.safe_dump(p, sort_keys=False))

    def stage(self, stage: str, *args: str, sets: tuple[str, ...] = ()) -> Result:
        """Run ``python -m pipelines.<stage> <args> --params params.yaml --set ...`` in-process (as DVC would, from
        the project root); capture its stdout/stderr (log records go to pytest's caplog)."""
        mod = importlib.import_module(f"pipelines.{stage}")
        argv = [*args, "--params", str(self.params_file)]
        for s in sets:
            argv += ["--set", s]
        return self._call(lambda: mod.main(argv))

    def cli(self, *argv: str) -> Result:
        from stvfm.cli import main

        return self._call(lambda: main(list(argv)))

    def _call(self, fn) -> Result:
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = fn()
        finally:
            os.chdir(cwd)
        return Result(int(rc or 0), out.getvalue(), err.getvalue())

    def hash(self) -> dict[str, str]:
        return tree_hash(self.root, self.outside)

    def data_ready(self, name: str = "synthetic", upto: str = "split") -> None:
        for st in ("download", "grid", "flow", "split"):
            r = self.stage(st, name)
            assert r.rc == 0, (st, r.err)
            if st == upto:
                return


def assert_refused(r: Result, *needles: str) -> None:
    """Exit 2 and exactly one stderr line that contains every needle (the file / key / value it is about)."""
    assert r.rc == 2, (r.rc, r.err[-2000:])
    assert len(r.err_lines) == 1, r.err
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err_lines[0], (n, r.err_lines[0])
