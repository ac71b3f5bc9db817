"""`stvfm model-info` under the project's default params (which read the clock: model.time_identity, model.output
identity): it builds every variant × backbone × grid on the meta device and prints the output shape; the interval that
sizes the time-of-day tables comes from --interval-minutes, --dataset or the stated default (30 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stvfm.cli import main

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ["simple", "token", "temporal", "adapter", "full"]
GRIDS = [(16, 8), (10, 20), (32, 32), (28, 32)]
BACKBONES = ["dinov2_vits14", "clip_vitb16", "deit_vitb16"]


def info(capsys, monkeypatch, *argv: str) -> tuple[int, dict | str]:
    """Run `stvfm model-info ... --json` from the project root (its params.yaml: the default profile)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("STVFM_PARAMS", raising=False)
    rc = main(["model-info", *argv, "--json"])
    cap = capsys.readouterr()
    return rc, json.loads(cap.out) if rc == 0 else cap.err


def check_shapes(r: dict, variant: str, grid: tuple[int, int], channels: int = 2) -> None:
    assert r["output_st"] == [2, 6, channels, *grid]
    assert r["output_flow"] == ([2, 6, channels, *grid] if variant == "full" else None)


def test_default_params_read_the_clock(project_root):
    """The premise of this file: under the default profile the model reads the clock, so model-info must size it."""
    from stvfm.config import load_params
    from stvfm.models.factory import needs_time_ids

    assert needs_time_ids(load_params(project_root / "params.yaml").model)


# fast (~0.3 s a build): the five variants × four grids with dinov2_vits14, and every variant once with each ViT-B
# backbone (on every grid in turn); the rest of the ViT-B matrix is marked slow
FAST = [("dinov2_vits14", v, g) for v in VARIANTS for g in GRIDS] + [
    (b, v, GRIDS[(i + j) % len(GRIDS)]) for j, b in enumerate(BACKBONES[1:]) for i, v in enumerate(VARIANTS)
]
FULL = [(b, v, g) for b in BACKBONES for v in VARIANTS for g in GRIDS if (b, v, g) not in FAST]


def _case_id(c) -> str:
    return f"{c[0]}-{c[1]}-{c[2][0]}x{c[2][1]}"


CASES = [pytest.param(*c, id=_case_id(c)) for c in FAST] + [
    pytest.param(*c, id=_case_id(c), marks=pytest.mark.slow) for c in FULL
]  # slow: 30 more builds on meta


@pytest.mark.parametrize(("backbone", "variant", "grid"), CASES)
def test_model_info_prints_the_output_shape_under_default_params(capsys, monkeypatch, backbone, variant, grid):
    rc, r = info(
        capsys,
        monkeypatch,
        "--variant",
        variant,
        "--backbone",
        backbone,
        "--grid",
        f"{grid[0]}x{grid[1]}",
        "--channels",
        "2",
    )
    assert rc == 0, r
    check_shapes(r, variant, grid)
    assert r["reads_clock"] is True and r["interval_minutes"] == 30  # the stated default
    assert 0 < r["trainable_params"] < r["total_params"]


def test_model_info_text_output_and_the_clock_line(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("STVFM_PARAMS", raising=False)
    assert (
        main(["model-info", "--variant", "simple", "--backbone", "dinov2_vits14", "--grid", "16x8", "--channels", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "output (B, T, C, H, W)   (2, 6, 2, 16, 8)" in out
    assert "30 min (default; set --dataset or --interval-minutes)" in out


def test_interval_from_the_dataset_or_the_flag(capsys, monkeypatch):
    """--dataset gives the interval (and grid, channels) from the registry; --interval-minutes wins over it. The
    interval sizes the time-of-day tables: STID's has one row per slot of the day."""
    from stvfm.datasets.registry import get_spec

    spec = get_spec("tdrive")
    assert spec.interval_minutes != 30  # not the default, so the dataset's clock shows
    rc, r = info(capsys, monkeypatch, "--dataset", "tdrive", "--variant", "simple", "--backbone", "dinov2_vits14")
    assert rc == 0, r
    assert (r["interval_minutes"], r["grid"], r["channels"], r["dataset"]) == (
        spec.interval_minutes,
        list(spec.grid),
        spec.channels,
        "tdrive",
    )
    check_shapes(r, "simple", tuple(spec.grid), channels=spec.channels)
    stid = [
        "--variant",
        "simple",
        "--backbone",
        "dinov2_vits14",
        "--grid",
        "4x4",
        "--channels",
        "1",
        "--set",
        "model.arch=stid",
        "--set",
        "model.stid.tod_dim=1",
        "--set",
        "model.stid.time_inputs=false",
        "--no-forward",
    ]
    counts = {}
    for extra in (["--interval-minutes", "5"], ["--interval-minutes", "7"], ["--dataset", "tdrive"], []):
        rc, r = info(capsys, monkeypatch, *stid, *extra)
        assert rc == 0, r
        counts[tuple(extra)] = r["total_params"]
    # a 1-d time-of-day row per slot: 288, 206 (ceil(1440/7)), tdrive's 1440 / its interval, 48 (the 30-min default)
    base = counts[("--interval-minutes", "5")] - 288
    assert counts == {
        ("--interval-minutes", "5"): base + 288,
        ("--interval-minutes", "7"): base + 206,
        ("--dataset", "tdrive"): base + 1440 // spec.interval_minutes,
        (): base + 48,
    }
    rc, r = info(
        capsys,
        monkeypatch,
        "--dataset",
        "tdrive",
        "--interval-minutes",
        "15",
        "--grid",
        "8x8",
        "--variant",
        "simple",
        "--backbone",
        "dinov2_vits14",
    )
    assert rc == 0 and r["interval_minutes"] == 15 and r["grid"] == [8, 8] and r["channels"] == spec.channels


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--interval-minutes", "0"], "--interval-minutes: expected minutes between 1 and 1440, got 0"),
        (["--dataset", "nowhere"], "unknown dataset 'nowhere'"),
        (["--grid", "0x8"], "--grid: expected a positive height and width, got '0x8'"),
    ],
)
def test_bad_model_info_flags_say_what_is_wrong(capsys, monkeypatch, argv, needle):
    rc, err = info(capsys, monkeypatch, "--variant", "simple", "--backbone", "dinov2_vits14", *argv)
    assert rc == 2 and needle in err and "retrain" not in err and "Traceback" not in err
