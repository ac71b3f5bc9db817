"""Suite-wide test settings: offline, quiet Ray, no usage stats; helpers to find the project and the real NYC
samples."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real NYC samples (../shared/data/real). Tests using it skip cleanly on a user's machine without shared/."""
    if not (REAL_DATA / "bikenyc1_tail.npz").exists():
        pytest.skip("../shared/data/real not present (real NYC samples are only in the development workplace)")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_versions(tmp_path_factory):
    """Project root + two local model versions of a tiny random-init ST-VFM (tests/serving/version_fixtures.py):
    ``plain`` (no time identities) and ``tid`` (time identities). Used by tests/serving and tests/reliability."""
    from serving.version_fixtures import build_project, make_version  # here, after the environment above is set

    root = build_project(tmp_path_factory.mktemp("serving") / "proj")
    return SimpleNamespace(
        root=root, plain=make_version(root, "version-plain"), tid=make_version(root, "version-tid", time_identity=True)
    )
