"""benchmarks/bench_train.py in its quickest mode (the synthetic city, tiny sizes, one-epoch fits): it runs, and its
last stdout line is the JSON the issue asks for, so the script cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest


def load_bench(project_root):
    spec = importlib.util.spec_from_file_location("bench_train", project_root / "benchmarks" / "bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_prints_the_figures(project_root, capsys):
    bench = load_bench(project_root)
    assert bench.main(["--quick", "--threads", "1", "--fit", "--fit-epochs", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("peak_bf16_gflops", "peak_fp32_gflops", "real_mfu_bf16", "paper_bf16_mfu_bf16", "fit_ratio_stvfm_stid"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["threads"] == 1 and len(out["load_start"]) == 3
    real = out["cases"]["real"]
    assert real["gflop_per_step"] > 0 and real["step_s"]["min"] <= real["step_s"]["median"] <= real["step_s"]["max"]
    assert "frozen VFM (+ adapters)" in real["modules"] and "temporal decoders" in real["modules"]
    assert 0 < real["ops"]["matmul_share"] < 1
    for case in ("real", "paper_bf16"):  # the ceiling lies above the MFU measured: free matmuls only make it faster
        assert out[f"{case}_mfu_bf16"] < out[f"{case}_mfu_bf16_ceiling"], case
    assert out["bf16_matmul_speedup"] > 0
    assert set(out["matmul_units"]) == {"amx_bf16", "avx512_bf16", "onednn_max_cpu_isa", "cpu_capability"}
    assert out["fit"]["stvfm"]["epochs_run"] == 1 and out["fit"]["stid"]["epochs_run"] == 1
    assert out["ratio"] == out["fit_ratio_stvfm_stid"]


def test_mfu_ceiling_is_the_step_without_its_matmuls(project_root):
    bench = load_bench(project_root)
    # a step at 10 % of the peak that spends 60 % of its time in matmuls: the other 40 % alone would run at 25 %
    assert bench.mfu_ceiling(0.10, 0.60) == 0.25
    assert bench.mfu_ceiling(0.10, 0.0) == 0.10  # no matmul time: nothing to gain from faster matmuls
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="matmul share"):
            bench.mfu_ceiling(0.1, bad)
