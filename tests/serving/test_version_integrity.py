"""A model version's parts must agree (issue 23): config, scaler and tensors are checked against each other and against
the sha256 digest written with the version (and recorded in the registry); every tampered version is refused in one
line, by `load_forecaster`, `stvfm predict` and the batch forecasts alike."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from stvfm.errors import DataError
from stvfm.serving.forecaster import load_forecaster
from stvfm.serving.version import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    canonical,
    read_config,
    read_weights,
    verify_digest,
    write_version,
)

from .version_fixtures import raw_window


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder, edit, redigest=False):
    """Change config.json in place; ``redigest``: also recompute its own digest (a tamperer who knows the format)."""
    import hashlib

    cfg = json.loads((folder / CONFIG_FILE).read_text())
    edit(cfg)
    if redigest:
        cfg["digest"]["config"] = hashlib.sha256(canonical(cfg)).hexdigest()
    (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    return folder


def _refused(folder, match):
    with pytest.raises(DataError) as e:
        load_forecaster(folder)
    msg = str(e.value)
    assert match in msg and "\n" not in msg and len(msg) < 400, msg
    return msg


def _flip_byte(folder):
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-100] ^= 0x01  # inside the last tensor's data: still a valid safetensors file
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    return folder


def test_written_version_carries_its_digest_and_shape_metadata(tiny_versions):
    import hashlib

    from safetensors import safe_open

    cfg = read_config(tiny_versions.plain / CONFIG_FILE, "x")
    d = cfg["digest"]
    assert d["algorithm"] == "sha256" and len(d["config"]) == len(d["weights"]) == 64
    with safe_open(str(tiny_versions.plain / WEIGHTS_FILE), "pt") as fh:
        meta = fh.metadata()
    assert meta["grid"] == "[16,8]" and meta["channels"] == "2" and meta["history"] == "6" and meta["horizon"] == "6"
    assert d["weights"] == hashlib.sha256((tiny_versions.plain / WEIGHTS_FILE).read_bytes()).hexdigest()
    # rewriting a loaded config (digest included) gives the same config digest: canonical JSON without itself (the
    # weights' bytes may differ: safetensors orders its metadata as it likes)
    again = write_version(tiny_versions.root / "again", cfg, read_weights(tiny_versions.plain / WEIGHTS_FILE, "x"))
    assert read_config(again / CONFIG_FILE, "x")["digest"]["config"] == d["config"]


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("grid 16x8 -> 8x16", "config.json does not match its digest"),
        (
            "grid 16x8 -> 8x16, config digest recomputed",
            "config.json says grid [8,16], its weights.safetensors was written for [16,8]",
        ),
        ("history 6 -> 5, config digest recomputed", "says history 5"),
        ("scaler mean NaN", "the standard scaler holds NaN/inf values"),
        ("scaler of 3 channels", "scaler has shape (3,), the config's 2 channel(s) need (2,)"),
        ("scaler std 0", "std > 0"),
        ("grid of strings", "grid must be two positive integers"),
        ("a weight byte changed", "weights.safetensors does not match the digest in config.json"),
        ("weights of another version", "weights.safetensors does not match the digest"),
        ("no digest", "lacks key(s) digest"),
    ],
)
def test_tampered_versions_are_refused_in_one_line(tiny_versions, tmp_path, case, match):
    v = _copy(tiny_versions.plain, tmp_path / "v")
    edits = {
        "grid 16x8 -> 8x16": lambda c: c.update(grid=[8, 16]),
        "grid 16x8 -> 8x16, config digest recomputed": lambda c: c.update(grid=[8, 16]),
        "history 6 -> 5, config digest recomputed": lambda c: c.update(history=5),
        "scaler mean NaN": lambda c: c["scaler"]["mean"].__setitem__(0, float("nan")),
        "scaler of 3 channels": lambda c: c["scaler"].update(mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 1.0]),
        "scaler std 0": lambda c: c["scaler"]["std"].__setitem__(1, 0.0),
        "grid of strings": lambda c: c.update(grid=["16", "8"]),
        "no digest": lambda c: c.pop("digest"),
    }
    if case in edits:
        _edit_config(v, edits[case], redigest="recomputed" in case)
    elif case == "a weight byte changed":
        _flip_byte(v)
    elif case == "weights of another version":
        shutil.copy(tiny_versions.tid / WEIGHTS_FILE, v / WEIGHTS_FILE)
    _refused(v, match)


def test_float64_and_non_finite_tensors_are_refused_even_with_a_valid_digest(tiny_versions, tmp_path):
    cfg = read_config(tiny_versions.plain / CONFIG_FILE, "x")
    state = read_weights(tiny_versions.plain / WEIGHTS_FILE, "x")
    f64 = write_version(tmp_path / "f64", cfg, {k: v.double() for k, v in state.items()})
    _refused(f64, "is float64; versions hold float32 tensors")
    k = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    nan = dict(state)
    nan[k] = state[k].clone()
    nan[k].view(-1)[0] = float("nan")
    _refused(write_version(tmp_path / "nan", cfg, nan), "holds NaN/inf values")
    # the untouched version loads and forecasts finite values
    x, _ = raw_window(tiny_versions.root)
    assert np.isfinite(load_forecaster(tiny_versions.plain).predict(x[None])).all()


def test_a_digest_recorded_in_the_registry_must_match(tiny_versions):
    cfg = read_config(tiny_versions.plain / CONFIG_FILE, "x")
    data = (tiny_versions.plain / WEIGHTS_FILE).read_bytes()
    assert set(verify_digest(cfg, data, "x", expect=dict(cfg["digest"]))) == set(
        read_weights(tiny_versions.plain / WEIGHTS_FILE, "x")
    )
    other = read_config(tiny_versions.tid / CONFIG_FILE, "y")["digest"]
    for part in ("config", "weights"):
        with pytest.raises(DataError, match=f"its {part} sha256 .* is not the .* recorded in the registry"):
            verify_digest(cfg, data, "models:/stvfm-synthetic/1", expect={part: other[part]})


def test_cli_and_batch_forecasts_refuse_a_tampered_version(capsys, tiny_versions, tmp_path):
    from stvfm.cli import main
    from stvfm.config import load_params
    from stvfm.serving.batch import run_forecast

    v = _edit_config(_copy(tiny_versions.plain, tmp_path / "v"), lambda c: c.update(grid=[8, 16]))
    x, _ = raw_window(tiny_versions.root)
    np.savez(tmp_path / "in.npz", flow=x)
    capsys.readouterr()
    rc = main(["predict", "--model", str(v), "--input", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "does not match its digest" in err, err
    assert not (tmp_path / "o.npz").exists()
    with pytest.raises(DataError, match="does not match its digest"):
        run_forecast(
            load_params(tiny_versions.root / "params.yaml"),
            "synthetic",
            tiny_versions.root,
            model=str(v),
            use_ray=False,
            out=tmp_path / "fc.zarr",
        )
    assert not (tmp_path / "fc.zarr").exists()
    assert torch.get_default_dtype() == torch.float32
