"""The real-data ablation runner (pipelines/ablation.py, stvfm.studies.ablation) on a tiny synthetic project: the named
rows only, each a result file (val and test, the row's overrides, what the model was), one log line each, the report."""

from __future__ import annotations

import re

from stvfm.io import read_json
from stvfm.studies.ablation import result_path, run_ablation

from .conftest import tiny_params


def test_named_rows_write_results_report_and_one_line_each(tiny_project, caplog):
    caplog.set_level("INFO", logger="stvfm.studies.ablation")
    p = tiny_params(tiny_project, **{"train.use_ray": False, "train.epochs": 1})
    out = run_ablation("synthetic", p, tiny_project, names=["simple", "identity-only"])
    assert out["runs"] == 2
    folder = result_path(tiny_project, "synthetic", "simple").parent
    assert sorted(q.name for q in folder.glob("*.json")) == ["identity-only.json", "simple.json"]
    simple, ident = (read_json(folder / f"{n}.json") for n in ("simple", "identity-only"))
    assert simple["overrides"] == {"model.variant": "simple"} and simple["model"]["variant"] == "simple"
    assert ident["model"]["vfm_blocks"] == 0 and ident["model"]["output"] == "identity only"
    for r in (simple, ident):  # selected on validation, scored once on test
        assert set(r["val"]) >= {"mae", "rmse"} and set(r["test"]) >= {"mae", "rmse"} and r["epochs_run"] == 1
    text = (tiny_project / "reports" / "ablation-synthetic.md").read_text()
    assert out["report"].endswith("ablation-synthetic.md") and "simple" in text and "identity-only" in text
    num = r"\d+\.\d{3}"
    line = (
        rf"ablation synthetic (simple|identity-only): val MAE {num} RMSE {num} \| test MAE {num} RMSE {num} \(\d+ s\)"
    )
    logged = [m.getMessage() for m in caplog.records if m.name == "stvfm.studies.ablation"]
    assert sorted(re.fullmatch(line, m).group(1) for m in logged) == ["identity-only", "simple"], logged
