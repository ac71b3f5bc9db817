"""`stvfm tune apply best.yaml`: the one command that writes the best config into params.yaml."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from stvfm.cli import main
from stvfm.config import load_params
from stvfm.errors import ConfigError
from tune.apply import apply_best
from tune.run import write_best


@pytest.fixture
def files(tmp_path, project_root):
    params = tmp_path / "params.yaml"
    shutil.copy(project_root / "params.yaml", params)
    best = tmp_path / "tune" / "results" / "synthetic" / "best.yaml"
    write_best(
        best,
        {
            "dataset": "synthetic",
            "metric": "val_rmse",
            "mode": "min",
            "value": 1.5,
            "config": {
                "model.lambda_flow": 0.0421,
                "model.prompt_layers": 3,
                "model.backbone": "vit_tiny",
                "train.lr": 0.0007,
            },
            "set": {"model.vfm_blocks": 2},
        },
    )
    return params, best


def test_apply_writes_config_and_keeps_comments(files, capsys):
    params, best = files
    before = params.read_text()
    assert main(["tune", "apply", str(best), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "model.lambda_flow: 0.5 -> 0.0421" in out and "model.prompt_layers: None -> 3" in out
    p = load_params(params)
    assert (p.model.lambda_flow, p.model.prompt_layers, p.model.vfm_blocks, p.train.lr) == (0.0421, 3, 2, 0.0007)
    assert p.train.epochs == load_params(best.parents[3] / "params.yaml").train.epochs  # study settings not applied
    after = params.read_text()
    assert "\n  lambda_flow: 0.0421\n" in after
    assert re.search(r"\n  prompt_layers: 3 +# null = dataset table", after)  # inline comments stay on their line
    # every comment line of the original survives
    assert [line for line in before.splitlines() if line.strip().startswith("#")] == [
        line for line in after.splitlines() if line.strip().startswith("#")
    ]
    assert main(["tune", "apply", str(best), "--params", str(params)]) == 0
    assert "already has the config" in capsys.readouterr().out


def test_dry_run_writes_nothing(files):
    params, best = files
    before = params.read_text()
    changes = apply_best(best, params, dry_run=True)
    assert set(changes) == {"model.lambda_flow", "model.prompt_layers", "model.vfm_blocks", "train.lr"}
    assert params.read_text() == before


def test_bad_best_files_fail_cleanly(files, tmp_path):
    params, best = files
    before = params.read_text()
    with pytest.raises(ConfigError, match=re.escape("not found; run `python -m tune.run")):
        apply_best(tmp_path / "nope.yaml", params)
    doc = yaml.safe_load(best.read_text())
    doc["config"]["model.lamda_flow"] = 0.1
    best.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=re.escape("key 'model.lamda_flow' is not in")):
        apply_best(best, params)
    doc["config"] = {"model.prompt_layers": "three"}
    best.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"invalid params.*model\.prompt_layers: expected an integer"):
        apply_best(best, params)
    assert params.read_text() == before  # nothing half-applied
    assert main(["tune", "apply", str(tmp_path / "nope.yaml"), "--params", str(params)]) == 2
