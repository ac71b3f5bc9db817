"""The paper's tables as data: a few transcribed cells, row counts, N/A handling."""

from __future__ import annotations

import math

import pytest

from stvfm import paper
from stvfm.errors import ConfigError


def test_table2_shape_and_cells():
    rows = paper.read_rows("table2_main")
    assert len(rows) == 180
    assert len({r["method"] for r in rows}) == 18
    assert {r["dataset"] for r in rows} == set(paper.PAPER_DATASETS)
    assert paper.lookup("table2_main", "crowd", method="ST-VFM") == {"rmse": 2.51, "mae": 1.06}
    assert paper.lookup("table2_main", "trafficzz", method="HA")["mae"] == 0.857
    assert paper.lookup("table2_main", "taxinyc2", method="STID") == {"rmse": 17.37, "mae": 7.35}
    assert paper.lookup("table2_main", "bikenyc1", method="ARIMA") == {"rmse": 12.37, "mae": 3.86}
    assert paper.lookup("table2_main", "trafficsh", method="UniST") == {"rmse": 0.665, "mae": 0.405}


def test_table3_ablation_variants():
    assert paper.lookup("table3_ablation", "tdrive", variant="temporal") == {"rmse": 40.65, "mae": 17.36}
    assert paper.lookup("table3_ablation", "bikenyc1", variant="simple") == {"rmse": 8.49, "mae": 2.65}
    assert paper.lookup("table3_ablation", "taxinyc1", variant="full") == {"rmse": 13.79, "mae": 4.95}
    assert {r["variant"] for r in paper.read_rows("table3_ablation")} == {
        "",
        "simple",
        "token",
        "temporal",
        "adapter",
        "full",
    }


def test_appendix_tables():
    assert paper.lookup("appendix_table2_videomae", "bikenyc2", model="Video") == {"rmse": 5.71, "mae": 2.62}
    na = paper.lookup("appendix_table3_backbones", "tdrive", backbone="clip_vitb16")
    assert math.isnan(na["rmse"]) and math.isnan(na["mae"])
    assert paper.lookup("appendix_table3_backbones", "trafficsh", backbone="deit_vitb16") == {
        "rmse": 0.641,
        "mae": 0.387,
    }
    df = paper.load_table("appendix_table3_backbones")
    assert len(df) == 40 and df["rmse"].isna().sum() == 2


def test_unknown_table():
    with pytest.raises(ConfigError, match="unknown paper table"):
        paper.read_rows("table9")
