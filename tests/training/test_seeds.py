"""The seed study runner (pipelines/seeds.py, stvfm.studies.seeds): job names, the STID job's recipe, results and
report from a tiny synthetic project, mean ± std, and a bad job name as a one-line exit 2."""

from __future__ import annotations

import re
import statistics

import pytest

from stvfm.errors import ConfigError
from stvfm.studies.seeds import job_params, parse_job, render_seeds, run_seeds, summarise

from .conftest import tiny_params


def test_job_names_and_params(tiny_project):
    assert parse_job("stvfm@2") == ("stvfm", 2) and parse_job("stid@0") == ("stid", 0)
    for bad in ("stvfm", "unet@1", "stid@-1", "stid@x", "../stid@1", "stid@1/.."):
        with pytest.raises(ConfigError, match="expected <model>@<seed>"):
            parse_job(bad)
    p = tiny_params(tiny_project, **{"train.use_ray": False})
    st = job_params(p, "stid", 3)
    # the baseline's reference recipe from params.yaml baselines.stid.overrides, with this seed
    assert (st.model.arch, st.train.seed, st.train.optimizer, st.train.loss, st.data.scaler) == (
        "stid",
        3,
        "adam",
        "mae",
        "per_cell",
    )
    sv = job_params(p, "stvfm", 1)
    assert (sv.model.arch, sv.train.seed, sv.model.variant) == ("stvfm", 1, p.model.variant)


def test_run_writes_results_and_report(tiny_project, caplog):
    caplog.set_level("INFO", logger="stvfm.studies.seeds")
    p = tiny_params(
        tiny_project,
        **{
            "train.use_ray": False,
            "train.epochs": 1,
            "baselines.stid.overrides.train.epochs": 2,
            "baselines.stid.overrides.train.max_batches_per_epoch": 2,
        },
    )
    out = run_seeds("synthetic", p, tiny_project, jobs=["stvfm@0", "stid@0", "stid@1"])
    assert out["runs"] == 3
    folder = tiny_project / "metrics" / "synthetic" / "seeds"
    assert sorted(q.name for q in folder.glob("*.json")) == ["stid@0.json", "stid@1.json", "stvfm@0.json"]
    s = out["summary"]
    assert s["stid"]["seeds"] == [0, 1] and s["stvfm"]["seeds"] == [0] and s["stvfm"]["test_mae_std"] == 0.0
    text = (tiny_project / "reports" / "seeds-synthetic.md").read_text()
    assert "| ST-VFM | 0 |" in text and "| STID (baseline recipe) | 1 |" in text and "ST-VFM ÷ STID, means" in text
    assert "persistence (reference)" in text
    num = r"\d+\.\d{3}"
    line = rf"seeds synthetic JOB: val MAE {num} RMSE {num} \| test MAE {num} RMSE {num} \(\d+ s\)"
    logged = [r.getMessage() for r in caplog.records if r.name == "stvfm.studies.seeds"]
    for job in ("stvfm@0", "stid@0", "stid@1"):  # one line per run: what it scored on val and test, and its time
        assert sum(bool(re.fullmatch(line.replace("JOB", re.escape(job)), m)) for m in logged) == 1, (job, logged)


def test_summary_is_mean_and_sample_std():
    rows = [
        {
            "model": "stid",
            "seed": s,
            "val": {"mae": v, "rmse": 2 * v},
            "test": {"mae": v + 1, "rmse": v},
            "best_epoch": 1,
            "epochs_run": 2,
            "fit_s": 1.0,
            "profile": "real",
        }
        for s, v in ((0, 1.0), (1, 2.0), (2, 4.0))
    ]
    s = summarise(rows)["stid"]
    assert s["val_mae"] == pytest.approx(7 / 3) and s["test_mae"] == pytest.approx(7 / 3 + 1)
    assert s["val_rmse_std"] == pytest.approx(statistics.stdev([2.0, 4.0, 8.0]))
    refs = {k: {"persistence": {"mae": 1, "rmse": 1}, "ha": {"mae": 1, "rmse": 1}} for k in ("val", "test")}
    assert "2.333 ± 1.528" in render_seeds("x", rows, refs)


def test_cli_bad_job_is_one_line_exit_2(tiny_project, capsys):
    from pipelines.seeds import main

    rc = main(["synthetic", "stvfm@1", "resnet@0", "--params", str(tiny_project / "params.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "seed job 'resnet@0'" in err[0]
    assert not (tiny_project / "metrics" / "synthetic" / "seeds").exists()  # nothing trained, nothing written
