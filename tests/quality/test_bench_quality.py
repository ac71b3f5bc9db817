"""benchmarks/bench_quality.py: ratios against the best baseline from the DAG outputs, exit 2 when they are missing;
the ablation table renders every run and the references."""

from __future__ import annotations

import importlib.util
import json

from stvfm.io import write_json
from stvfm.studies.ablation import ABLATION, render_ablation


def load_bench(project_root):
    spec = importlib.util.spec_from_file_location("bench_quality", project_root / "benchmarks" / "bench_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_outputs(root, ds, ours, base):
    write_json(root / "metrics" / ds / "test.json", ours)
    write_json(root / "metrics" / ds / "baselines.json", base)
    write_json(root / "metrics" / ds / "baselines_detail.json", {"baselines": {m: {"seconds": 1.0} for m in base}})
    write_json(root / "models" / ds / "train.json", {"wall_s": 100.0})


def test_ratio_is_the_worst_against_the_best_baseline(tmp_path, project_root, capsys):
    bench = load_bench(project_root)
    fake_outputs(
        tmp_path,
        "a",
        {"mae": 1.0, "rmse": 3.0},
        {"persistence": {"mae": 2.0, "rmse": 8.0}, "ha": {"mae": 1.5, "rmse": 6.0}, "stid": {"mae": 1.2, "rmse": 3.5}},
    )
    fake_outputs(tmp_path, "b", {"mae": 2.0, "rmse": 4.0}, {"ha": {"mae": 1.6, "rmse": 5.0}})
    assert bench.main(["--datasets", "a", "b", "--root", str(tmp_path)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["per_sample"]["a"]["ratio_mae"] == round(1.0 / 1.2, 4)
    assert last["per_sample"]["a"]["ratio_rmse"] == round(3.0 / 3.5, 4)
    assert last["ratio"] == 1.25  # sample b loses on MAE: 2.0 / 1.6


def test_missing_outputs_exit_2_with_one_line(tmp_path, project_root, capsys):
    bench = load_bench(project_root)
    assert bench.main(["--datasets", "nope", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make real" in err[0] and "nope" in err[0]


def test_ablation_table_has_every_run_and_the_references():
    rows = [
        {
            "name": n,
            "model": {"variant": ov.get("model.variant", "full"), "time_identity": True, "output": "anchored"},
            "val": {"mae": 1.0, "rmse": 2.0},
            "test": {"mae": 1.1, "rmse": 2.1},
            "best_epoch": 3,
            "epochs_run": 5,
            "fit_s": 60.0,
            "profile": "real",
        }
        for n, ov in ABLATION
    ]
    refs = {s: {"persistence": {"mae": 3.0, "rmse": 9.0}, "ha": {"mae": 1.4, "rmse": 4.8}} for s in ("val", "test")}
    md = render_ablation("bikenyc2_test", rows, refs)
    for n, _ in ABLATION:
        assert f"| {n} |" in md
    assert "| ha (reference) |" in md and "1.400 / 4.800" in md and "`real`" in md
