"""``model.bf16: auto`` (stvfm.training.precision): bf16 autocast only where this machine's bf16 matmul beats fp32, the
choice made once before the model is built and kept as true/false in what the run writes."""

from __future__ import annotations

import pytest

from stvfm.config import params_from_dict
from stvfm.errors import ConfigError
from stvfm.training import precision
from stvfm.training.precision import MIN_SPEEDUP, resolve_bf16


@pytest.fixture
def measured(monkeypatch):
    """Pretend this CPU multiplies bf16 at ``speedup`` × fp32."""

    def set_speedup(speedup: float) -> None:
        monkeypatch.setattr(precision, "_measured_cpu", lambda threads: speedup)

    return set_speedup


@pytest.mark.parametrize("setting", [True, False])
def test_true_and_false_are_taken_as_they_are(setting, measured):
    measured(100.0 if not setting else 0.01)  # never consulted
    choice = resolve_bf16(setting)
    assert choice.enabled is setting and choice.reason == f"model.bf16={str(setting).lower()}"


@pytest.mark.parametrize(
    ("speedup", "enabled"),
    [(5.1, True), (MIN_SPEEDUP, True), (MIN_SPEEDUP - 0.01, False), (0.61, False), (0.2, False)],
)
def test_auto_on_cpu_follows_the_measured_matmul(speedup, enabled, measured):
    # 5.1: AMX (the step 1.31x faster in bf16); 0.61: AVX512-BF16 without AMX (1.33x slower); 0.2: no bf16 unit
    measured(speedup)
    choice = resolve_bf16("auto", "cpu")
    assert choice.enabled is enabled
    assert (
        f"{speedup:.2f}x fp32" in choice.reason
        and ("bf16 autocast" if enabled else "fp32, no autocast") in choice.reason
    )


def test_the_measurement_is_a_ratio_of_throughputs():
    s = precision.matmul_speedup((64, 32, 48), reps=2)
    assert isinstance(s, float) and 0 < s < 1000


def test_auto_is_the_only_word(measured):
    with pytest.raises(ValueError, match=r"model\.bf16: 'fast' is neither true/false nor 'auto'"):
        resolve_bf16("fast")
    assert params_from_dict({"model": {"bf16": "auto"}}).model.bf16 == "auto"
    with pytest.raises(ConfigError, match=r"model\.bf16: 'fast' is neither true/false nor 'auto'"):
        params_from_dict({"model": {"bf16": "fast"}})
    with pytest.raises(ConfigError, match=r"model\.bf16: expected true/false or a string, got 1"):
        params_from_dict({"model": {"bf16": 1}})


def test_the_model_refuses_an_unresolved_auto():
    import dataclasses

    from stvfm.config import ModelConfig
    from stvfm.models.factory import build_model

    cfg = dataclasses.replace(
        ModelConfig(), backbone="vit_tiny", allow_random_init=True, vfm_blocks=1, bf16="auto", time_identity=False
    )
    cfg.output = "plain"
    with pytest.raises(ValueError, match=r"model\.bf16='auto': resolve it to true/false before building the model"):
        build_model(cfg, (8, 8), 1)


@pytest.mark.parametrize("speedup", [5.1, 0.61])
def test_components_resolve_auto_before_the_model_is_built(tiny_project, measured, speedup):
    from stvfm.config import load_params
    from stvfm.training.components import build_components

    measured(speedup)
    p = load_params(tiny_project / "params.yaml", ["model.bf16=auto"])
    comp = build_components(p, "synthetic", tiny_project)
    want = speedup >= MIN_SPEEDUP
    # the loop's autocast, the model's own and the checkpoint's model_cfg all carry the answer, never "auto"
    assert comp.bf16 is want and comp.model.bf16 is want and comp.meta["model_cfg"]["bf16"] is want


def test_a_run_records_what_trained_not_auto(tiny_project, measured):
    import mlflow

    from stvfm.io import read_json
    from stvfm.paths import dataset_paths
    from stvfm.training.stage import run_train

    from .conftest import tiny_params

    measured(0.61)  # a CPU without a fast bf16 matmul: auto trains in fp32
    p = tiny_params(tiny_project, **{"train.use_ray": False, "train.epochs": 1, "model.bf16": "auto"})
    info = run_train(p, "synthetic", tiny_project)
    paths = dataset_paths("synthetic", tiny_project, p.data.root)
    version = read_json(paths.model_version_dir / "config.json")
    assert info["bf16"] is False and read_json(paths.model_dir / "train.json")["bf16"] is False
    assert version["model_cfg"]["bf16"] is False  # the served model runs as it trained
    run = mlflow.MlflowClient().get_run(info["run_id"])
    assert run.data.params["model.bf16"] == "auto" and run.data.params["model.bf16_used"] == "False"
