"""Report generation from fixture metrics: paper rows and relative gaps only for the paper's file under the paper's
protocol, what differs for every other data (synthetic, trip records, local samples, the file under our split), the
pretrained and data-span lines, summary table."""

from __future__ import annotations

import pytest

from stvfm.io import write_json

from report_fixtures import write_fixture

# the paper's BikeNYC file under the paper's protocol (UniST's published windows): the one case with gaps
PAPER_FILE = dict(
    name="bikenyc1",
    start="2016-08-01T00:00:00",
    T=60 * 24,
    interval=60,
    protocol="published",
    source={"kind": "paper-file", "reader": "unist", "files": ["BikeNYC_short.json"]},
)


def test_report_gaps_for_the_papers_file_and_protocol(tmp_path, params):
    from stvfm.report.markdown import build_report

    write_fixture(tmp_path, **PAPER_FILE, disagreements=["interval: file 30 min, Table 1 60 min"])
    d = build_report("bikenyc1", params, tmp_path, maps=False)
    md = (tmp_path / "reports" / "bikenyc1.md").read_text()
    assert "Where the paper's file and its Table 1 disagree (the file decides):\n\n- interval: file 30 min" in md
    rows = {r["key"]: r for r in d["rows"]}
    assert d["comparable"] and d["level"] == "comparable"
    assert rows["ha"]["paper"] == {"rmse": 11.41, "mae": 3.43}  # Table 2, BikeNYC
    assert "| HA | 3.000 | 12.000 | 3.43 | 11.41 | -12.5% | +5.2% |" in md
    assert "| ARIMA | 3.860 | 12.370 | 3.86 | 12.37 | +0.0% | +0.0% |" in md
    assert "| ST-VFM (full) | 1.800 | 3.380 | 1.2 | 3.38 | +50.0% | +0.0% |" in md
    assert "| Persistence | 4.000 | 8.000 | – | – | – | – |" in md
    assert "| simple | 2.650 | 8.490 | 2.65 | 8.49 | +0.0% | +0.0% |" in md  # Table 3 #1 (simple), BikeNYC
    assert "| clip_vitb16 | 1.500 | 4.000 | 1.2 | 3.45 |" in md  # appendix Table 3, CLIP on BikeNYC
    assert "By MAE our ST-VFM would rank" in md and "NO GAP" not in md
    assert "NOT pretrained" in md and "`vit_tiny`" in md
    assert "split: UniST's published train/val/test windows" in md


def test_report_without_gaps_for_synthetic_data(tmp_path, params):
    from stvfm.report.markdown import build_report

    write_fixture(tmp_path, disagreements=["span: file 2024-01-01..2024-01-10, Table 1 2016-08-01..2016-09-29"])
    line = "WARNING: ST-VFM LOSES to HA (MAE) on validation (MAE 2.090 vs HA 1.440, persistence 2.300; ...)"
    write_json(
        tmp_path / "models" / "synthetic" / "train.json",
        {
            "profile": "default",
            "setup": {"profile": "default", "profile_reason": "auto: synthetic data"},
            "verdict": {"loses": True, "line": line},
        },
    )
    d = build_report("synthetic", params, tmp_path, maps=False)
    md = (tmp_path / "reports" / "synthetic.md").read_text()
    assert f"- **Validation verdict:** {line}" in md
    assert "**Training profile:** `default` (auto: synthetic data)" in md
    assert not d["comparable"] and all(r["paper"] is None for r in d["rows"] + d["variants"] + d["backbones"])
    assert "SYNTHETIC DATA — NOT COMPARABLE" in md and "Table 1 disagree" not in md  # the facet table says it
    assert "| HA | 3.000 | 12.000 |\n" in md and "| simple | 2.650 | 8.490 |\n" in md  # ours only: no paper, no gap
    assert "%" not in md.split("## The paper's Table 2")[0]  # no gap anywhere above the reference table
    assert "## The paper's Table 2 for BikeNYC-1 — for reference only, not comparable" in md
    assert "By MAE our ST-VFM would rank" not in md
    assert "| source | a generated city | UniST's BikeNYC_short.json | – | **no** |" in md
    # ours against what the paper's file holds (30 min, 1 channel) and what its Table 1 says (60 min)
    assert "| interval | 60 min | 30 min | 60 min | **no** |" in md and "| channels | 2 | 1 | – | **no** |" in md
    assert "2024-01-01T00:00 .. 2024-01-10T23:00 (240 steps of 60 min, 10.0 days" in md
    assert "split: ratio 70/15/15 of the series" in md
    figs = tmp_path / "reports" / "figures" / "synthetic"
    assert sorted(p.name for p in figs.iterdir()) == ["bars.png", "learning_curves.png", "per_step.png"]


def test_report_without_split_outputs_is_one_line(tmp_path, params, capsys):
    """A dataset whose data stages never ran: exit 2 and one line naming the missing meta.json (no traceback)."""
    from stvfm.cli import main

    params_file = tmp_path / "params.yaml"
    params_file.write_text("datasets: [synthetic]\n")
    rc = main(["report", "synthetic", "--root", str(tmp_path), "--params", str(params_file), "--no-mlflow"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "data/split/synthetic/meta.json" in err[0] and "no split outputs" in err[0]


def test_relation_of_every_kind_of_data():
    from stvfm.datasets.registry import get_spec
    from stvfm.report.collect import data_span
    from stvfm.report.relation import relation

    local = {"bk2": {"path": "x.npz", "like": "bikenyc2"}, "mine": "z.npz"}
    sample = data_span({"start": "2016-08-10T00:00:00", "T": 960, "interval_minutes": 30})
    assert sample["end"] == "2016-08-29T23:30" and sample["days"] == 20.0
    meta = {"grid": [10, 20], "channels": 2, "split": [0.7, 0.15, 0.15]}
    r = relation(get_spec("bk2", local), sample, meta)  # a real sample: other preprocessing, 20 days, our split
    assert (r.level, r.paper_dataset, r.comparable) == ("local", "bikenyc2", False)
    assert "SAMPLE" not in r.sentence and "NOT the paper's data" in r.sentence
    assert {x["facet"] for x in r.differs if not x["same"]} >= {"source", "span", "split"}
    assert relation(get_spec("mine", local), sample, meta).level == "none"
    full = data_span({"start": "2016-08-01T00:00:00", "T": 60 * 24, "interval_minutes": 60})
    bike = {"grid": [16, 8], "channels": 2, "split": [0.7, 0.15, 0.15]}
    r = relation(get_spec("bikenyc1"), full, bike)  # the paper's file under our ratio split
    assert r.level == "paper-file" and not r.comparable
    assert [x["facet"] for x in r.differs if not x["same"]] == ["split"]
    assert relation(get_spec("bikenyc1"), full, {**bike, "protocol": "published"}).comparable
    full30 = data_span({"start": "2016-08-01T00:00:00", "T": 60 * 48, "interval_minutes": 30})
    r = relation(get_spec("bikenyc1-trips"), full30, {**bike, "protocol": "published"})  # was a KeyError
    assert (r.level, r.paper_dataset, r.comparable) == ("trips", "bikenyc1", False)
    assert [x["facet"] for x in r.differs if not x["same"]] == ["source", "channels"]  # in/outflow vs UniST's one
    r = relation(get_spec("synthetic-crowd"), full, bike)
    assert (r.level, r.paper_dataset, r.comparable) == ("synthetic", "crowd", False)
    # the file's own facts and its disagreements with Table 1 travel with the relation
    r = relation(
        get_spec("bikenyc1"),
        full,
        {**bike, "protocol": "published", "disagreements": ["interval: the file has 30 min, Table 1 says 60"]},
    )
    assert r.comparable and "30 min" in r.sentence


def test_summary_lists_every_dataset(tmp_path, params):
    from stvfm.report.markdown import build_summary

    write_fixture(tmp_path, "synthetic")
    write_fixture(tmp_path, "bikenyc2_test", start="2016-08-10T00:00:00", T=960, interval=30)
    write_fixture(tmp_path, **PAPER_FILE)
    p = params
    p.local_sources = {"bikenyc2_test": {"path": "x.npz", "like": "bikenyc2"}}
    text = build_summary(["synthetic", "bikenyc2_test", "bikenyc1"], p, tmp_path).read_text()
    assert "| [synthetic](synthetic.md) | BikeNYC-1 | SYNTHETIC — not comparable |" in text
    assert "| [bikenyc2_test](bikenyc2_test.md) | BikeNYC-2 | other data (local file) — no gap |" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| [")}
    assert rows["[bikenyc2_test](bikenyc2_test.md)"].endswith("| 1.800 / 3.380 | – | – |")  # no paper, no gap
    assert rows["[bikenyc1](bikenyc1.md)"].endswith("| 1.800 / 3.380 | 1.2 / 3.38 | +50.0% |")
    assert "the paper's file and split" in rows["[bikenyc1](bikenyc1.md)"]


def test_sweep_config_validation(params):
    from stvfm.config import SweepConfig
    from stvfm.errors import ConfigError

    cfg = SweepConfig.from_params(params.sweeps)
    assert cfg.overrides("variant", "token")["model.variant"] == "token"
    ob = cfg.overrides("backbone", "clip_vitb16")
    assert ob["model.backbone"] == "clip_vitb16" and ob["model.allow_random_init"] is True
    with pytest.raises(ConfigError, match="variants"):
        SweepConfig.from_params({"variants": ["tiny"]})
    with pytest.raises(ConfigError, match="unknown key"):
        SweepConfig.from_params({"variant": ["full"]})
    with pytest.raises(ConfigError, match="backbone"):
        cfg.overrides("backbone", "resnet")
