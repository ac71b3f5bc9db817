from __future__ import annotations

import dataclasses

import pytest
import yaml

from stvfm.config import Params, flatten, load_params, params_from_dict, resolve_model_config
from stvfm.datasets.registry import get_spec
from stvfm.errors import ConfigError


def test_project_params_load(project_root):
    p = load_params(project_root / "params.yaml")
    assert isinstance(p, Params)
    assert p.datasets == ["synthetic"]
    assert p.data.history == 6 and p.data.horizon == 6
    assert p.data.split == [0.7, 0.15, 0.15]


def test_overrides_are_typed(project_root):
    p = load_params(project_root / "params.yaml", ["model.lambda_flow=0.25", "train.epochs=2", "model.weights=null"])
    assert p.model.lambda_flow == 0.25 and isinstance(p.model.lambda_flow, float)
    assert p.train.epochs == 2 and p.model.weights is None


def test_unknown_key_names_section(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({"model": {"lamda_flow": 0.5}}))
    with pytest.raises(ConfigError, match=r"params\.model: unknown key\(s\) lamda_flow"):
        load_params(f)


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        ({"model": {"variant": "bogus"}}, "model.variant"),
        ({"data": {"split": [0.5, 0.5]}}, "data.split"),
        ({"train": {"epochs": "many"}}, "train.epochs"),
        ({"train": {"use_gpu": "yes"}}, "train.use_gpu"),
    ],
)
def test_bad_values_are_named(raw, msg):
    with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
        params_from_dict(raw)


@pytest.mark.parametrize("value", [[0.7, 0.15, 0.15], [0.6, 0.2, 0.2], "published"])
def test_split_is_a_ratio_or_published(value):
    assert params_from_dict({"data": {"split": value}}).data.split == value


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("publish", r"data\.split: 'publish' is neither a list of three fractions .* nor 'published'"),
        (0.7, r"data\.split: expected a list or a string, got 0\.7"),
        ([0.7, "a", 0.15], r"data\.split\[1\]: expected a number, got 'a'"),
        ([0.8, 0.3, 0.1], r"data\.split: expected three positive fractions summing to 1 .* or 'published'"),
    ],
)
def test_bad_split_is_one_line_exit_2(tmp_path, capsys, monkeypatch, value, msg):
    with pytest.raises(ConfigError, match=msg):
        params_from_dict({"data": {"split": value}})
    from pipelines.split import main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"split": value}}))
    monkeypatch.chdir(tmp_path)
    assert main(["x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.split" in err[0]


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_prompt_layers_from_table():
    p = params_from_dict({})
    assert resolve_model_config(p, get_spec("bikenyc1")).prompt_layers == 1
    assert resolve_model_config(p, get_spec("crowd")).prompt_layers == 2
    p2 = params_from_dict({"model": {"prompt_layers": 3}})
    assert resolve_model_config(p2, get_spec("crowd")).prompt_layers == 3


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": []}) == {"a.b": 1, "a.c.d": 2, "e": []}
    flat = flatten(dataclasses.asdict(params_from_dict({})))
    assert "model.lambda_flow" in flat and "train.num_workers" in flat


def test_named_profiles_apply_before_overrides(tmp_path):
    import pytest
    import yaml

    from stvfm.config import load_params
    from stvfm.errors import ConfigError

    p = tmp_path / "params.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "profile": "default",
                "train": {"epochs": 8},
                "profiles": {"quick": {"train.epochs": 1, "model.vfm_blocks": 1}},
            }
        )
    )
    assert load_params(p).train.epochs == 8
    q = load_params(p, ["profile=quick"])
    assert (q.profile, q.train.epochs, q.model.vfm_blocks) == ("quick", 1, 1)
    assert load_params(p, ["train.epochs=3", "profile=quick"]).train.epochs == 3  # --set wins over the profile
    with pytest.raises(ConfigError, match="profile: 'nope' is not one of auto, default, quick"):
        load_params(p, ["profile=nope"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_params(p, ["profiles.quick={model.nope: 1}", "profile=quick"])


def test_auto_profile_chooses_per_dataset(tmp_path):
    """`profile: auto`: the `real` recipe for real data (the ten, <name>-trips, local_sources), `default` for
    synthetic data; an explicit profile (-S / --set) wins for every dataset; the reason is recorded."""
    import pytest
    import yaml

    from stvfm.config import load_params
    from stvfm.errors import ConfigError

    p = tmp_path / "params.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "profile": "auto",
                "train": {"epochs": 8},
                "local_sources": {"mine": "x.npz"},
                "profiles": {"real": {"train.epochs": 40}, "quick": {"train.epochs": 1}},
            }
        )
    )
    for ds in ("synthetic", "synthetic-crowd", None):
        q = load_params(p, dataset=ds)
        assert (q.profile, q.train.epochs) == ("default", 8)
    assert load_params(p, dataset="synthetic").profile_reason == "auto: synthetic data"
    for ds in ("bikenyc2", "bikenyc1-trips", "mine"):
        q = load_params(p, dataset=ds)
        assert (q.profile, q.train.epochs, q.profile_reason) == ("real", 40, "auto: real data")
    for ds in ("synthetic", "mine"):  # chosen explicitly: the same recipe for every dataset
        q = load_params(p, ["profile=quick"], dataset=ds)
        assert (q.profile, q.train.epochs, q.profile_reason) == ("quick", 1, "chosen: profile: quick")
    assert load_params(p, ["profile=default"], dataset="mine").train.epochs == 8
    assert load_params(p, ["train.epochs=3"], dataset="mine").train.epochs == 3  # --set still wins over auto
    q = load_params(p, dataset="synthetic")
    assert q.to_dict()["profile"] == "default"  # resolved: a copy (with_overrides) does not re-resolve
    p.write_text(yaml.safe_dump({"profile": "auto", "profile_reason": "x"}))
    with pytest.raises(ConfigError, match="profile_reason: not a params key"):
        load_params(p)
