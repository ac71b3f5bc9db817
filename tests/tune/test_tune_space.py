"""tune.settings + tune.space: the `tune:` section of params.yaml -> typed settings -> Ray Tune param_space."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from stvfm.config import load_raw
from stvfm.errors import ConfigError
from tune.run import trial_overrides
from tune.settings import tune_settings
from tune.space import parse_space, plain_config, to_param_space, trial_params


@pytest.fixture(scope="module")
def raw(project_root):
    return load_raw(project_root / "params.yaml")


def test_default_study_is_cheap_and_searches_the_issue_keys(raw):
    s = tune_settings(raw["tune"])
    assert s.profile is None and s.metric == "val_rmse" and s.mode == "min"
    assert {"model.lambda_flow", "model.prompt_layers", "model.backbone", "train.lr"} <= set(s.space)
    assert s.space["model.lambda_flow"] == {"loguniform": [0.01, 10.0]}
    assert s.space["model.prompt_layers"] == {"choice": [0, 1, 2, 3]}
    assert s.space["model.backbone"] == {"choice": ["vit_tiny"]}
    # a trial (driver + workers) fits twice into the local cluster: no placement-group deadlock (stack-facts §3)
    assert s.max_concurrent_trials * s.resources.cpus_per_trial <= s.local_num_cpus


def test_paper_profile_has_the_three_vfms_on_gpus(raw):
    s = tune_settings(raw["tune"], profile="paper")
    assert s.profile == "paper"
    assert s.space["model.backbone"] == {"choice": ["dinov2_vits14", "clip_vitb16", "deit_vitb16"]}
    assert s.resources.use_gpu and s.resources.gpus_per_worker == 1 and s.resources.trial_cpu == 1
    assert s.set["model.vfm_blocks"] is None
    assert trial_overrides(s)["train.use_gpu"] is True and trial_overrides(s)["model.vfm_blocks"] is None


def test_unknown_profile_and_bad_settings_name_the_key(raw):
    with pytest.raises(ConfigError, match=r"tune profile \'gpu8\' is not defined.*paper"):
        tune_settings(raw["tune"], profile="gpu8")
    bad = copy.deepcopy(raw["tune"])
    bad["metric"] = "val_mse"
    with pytest.raises(ConfigError, match=r"params.tune.metric: 'val_mse'"):
        tune_settings(bad)
    bad = copy.deepcopy(raw["tune"])
    bad["num_sample"] = 3
    with pytest.raises(ConfigError, match=r"params.tune: unknown key\(s\) num_sample"):
        tune_settings(bad)
    bad = copy.deepcopy(raw["tune"])
    bad["grace_period"] = 9
    with pytest.raises(ConfigError, match=r"grace_period \(9\) must be <= tune.epochs"):
        tune_settings(bad)


def test_space_is_validated_against_params(raw):
    parsed = parse_space(
        {
            "model.lambda_flow": {"loguniform": [0.01, 10]},
            "model.prompt_layers": {"randint": [0, 3]},
            "train.epochs": 3,
        },
        raw,
    )
    assert parsed["model.prompt_layers"] == ("randint", [0, 3]) and parsed["train.epochs"] == ("fixed", 3)
    with pytest.raises(ConfigError, match=r"tune.space.model.lamda_flow: 'model.lamda_flow' is not a params key"):
        parse_space({"model.lamda_flow": {"uniform": [0, 1]}}, raw)
    with pytest.raises(ConfigError, match=r"tune.space.model: 'model' is a section"):
        parse_space({"model": {"choice": [1]}}, raw)
    with pytest.raises(ConfigError, match=r"loguniform: bounds must be > 0"):
        parse_space({"model.lambda_flow": {"loguniform": [0, 1]}}, raw)
    with pytest.raises(ConfigError, match=r"expected one of \{loguniform, uniform, randint, choice\}"):
        parse_space({"model.lambda_flow": {"normal": [0, 1]}}, raw)
    # a corner value that params.yaml itself would reject fails before any trial starts
    with pytest.raises(ConfigError, match=r"tune.space.model.variant: value 'fancy' is invalid.*model.variant"):
        parse_space({"model.variant": {"choice": ["full", "fancy"]}}, raw)


def test_param_space_samples_inside_bounds(raw):
    from ray.tune.search.variant_generator import generate_variants

    parsed = parse_space(
        {
            "model.lambda_flow": {"loguniform": [0.01, 10]},
            "model.prompt_layers": {"randint": [0, 3]},
            "model.backbone": {"choice": ["vit_tiny"]},
        },
        raw,
    )
    space = to_param_space(parsed)
    seen = set()
    for _ in range(60):
        _, cfg = next(generate_variants(space))
        cfg = plain_config(cfg)
        assert 0.01 <= cfg["model.lambda_flow"] <= 10 and isinstance(cfg["model.lambda_flow"], float)
        assert cfg["model.backbone"] == "vit_tiny"
        seen.add(cfg["model.prompt_layers"])
    assert seen == {0, 1, 2, 3}  # randint bounds are inclusive


def test_trial_params_applies_config_then_validates(raw):
    s = tune_settings(raw["tune"])
    p = trial_params(raw, {"model.lambda_flow": 0.123456789, "model.prompt_layers": 3}, trial_overrides(s))
    assert p.model.lambda_flow == 0.123457 and p.model.prompt_layers == 3
    assert p.train.epochs == s.epochs and p.train.num_workers == s.resources.num_workers
    assert p.train.cpus_per_worker == s.resources.cpus_per_worker and p.train.use_gpu is False
    with pytest.raises(ConfigError, match=re.escape("model.prompt_layers: expected an integer")):
        trial_params(raw, {"model.prompt_layers": "two"})


def test_params_yaml_tune_section_roundtrips(project_root):
    doc = yaml.safe_load((project_root / "params.yaml").read_text())
    assert set(doc["tune"]["profiles"]) >= {"paper"}
