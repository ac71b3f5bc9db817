"""Fixtures of the hostile-user tests (harness.py holds the Project they drive)."""

from __future__ import annotations

import pytest

from harness import Project


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    """A throw-away project (params.yaml of BASE_PARAMS) beside ``outside/``, holding a file no bad input may touch."""
    root = tmp_path / "proj"
    outside = tmp_path / "outside"
    root.mkdir()
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious.txt").write_text("must survive every bad input\n")
    monkeypatch.delenv("STVFM_PARAMS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    proj = Project(root, outside)
    proj.write_params()
    return proj
