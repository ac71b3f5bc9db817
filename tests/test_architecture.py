"""The architecture as contracts (pyproject.toml [tool.importlinter], docs/ARCHITECTURE.md): the tree keeps them, and a
planted violation — an upward import hidden in a function body, MLflow in the data layer — breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root), "PATH": str(LINT.parent)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    for pkg in ("stvfm", "pipelines", "tune"):
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_every_contract():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
    for name in (
        "Layers:",
        "No import cycles",
        "know nothing of Ray, MLflow or DVC",
        "Only the Ray connection",
        "Only tracking, the model registry",
    ):
        assert name in r.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        # a lower layer reaching up, hidden in a function body (the checker reads every import statement)
        (
            "stvfm/models/layers.py",
            "def _planted():\n    from stvfm.training import loop  # noqa\n",
            "stvfm.models is not allowed to import stvfm.training",
        ),
        # a cycle between two packages: serving already imports models; models importing serving closes the loop
        (
            "stvfm/models/factory.py",
            "def _planted():\n    from stvfm.serving import version  # noqa\n",
            "stvfm.models is not allowed to import stvfm.serving",
        ),
        # the data layer learning about MLflow
        (
            "stvfm/data/flow.py",
            "def _planted():\n    import mlflow  # noqa\n",
            "stvfm.data is not allowed to import mlflow",
        ),
        # a module outside the named owners importing Ray
        ("stvfm/training/loop.py", "def _planted():\n    import ray  # noqa\n", "stvfm is not allowed to import ray"),
    ],
)
def test_a_planted_violation_breaks_a_contract(tmp_path, module, planted, broken):
    root = _copy_tree(tmp_path)
    with open(root / module, "a") as fh:
        fh.write("\n\n" + planted)
    r = _lint(root)
    assert r.returncode != 0
    assert broken in r.stdout, r.stdout[-3000:]
