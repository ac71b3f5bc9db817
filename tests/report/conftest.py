"""Fixtures of the report tests."""

from __future__ import annotations

import pytest

from stvfm.config import load_params


@pytest.fixture
def params(project_root):
    return load_params(
        project_root / "params.yaml",
        [
            "sweeps.backbones=[dinov2_vits14,clip_vitb16,deit_vitb16]",
            "sweeps.variants=[simple,token,temporal,adapter,full]",
        ],
    )
