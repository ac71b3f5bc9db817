"""Report generation from fixture metrics: paper rows for the matching dataset, relative gaps, the pretrained and
data-span lines, comparability of synthetic / sample / other-period data, summary table."""
from __future__ import annotations

import pytest

from stvfm.config import load_params
from stvfm.io import write_json


def write_fixture(root, name="synthetic", start="2024-01-01T00:00:00", T=240, interval=60):
    m = root / "metrics" / name
    write_json(root / "data" / "split" / name / "meta.json",
               {"T": T, "start": start, "interval_minutes": interval, "grid": [16, 8], "channels": 2,
                "n_windows": {"train": 150, "val": 25, "test": 25}, "scale_1e3": False, "history": 6, "horizon": 6})
    write_json(m / "baselines.json", {"persistence": {"mae": 4.0, "rmse": 8.0}, "ha": {"mae": 3.0, "rmse": 12.0},
                                      "arima": {"mae": 3.86, "rmse": 12.37}, "stid": {"mae": 2.0, "rmse": 4.0}})
    per_step = [{"step": i + 1, "mae": 1.0 + 0.1 * i, "rmse": 2.0 + 0.1 * i} for i in range(6)]
    write_json(m / "baselines_detail.json", {"baselines": {"ha": {"mae": 3.0, "rmse": 12.0, "per_step": per_step,
                                                                  "settings": {"period": "day"}}}})
    write_json(m / "test.json", {"mae": 1.8, "rmse": 3.38, "per_step": per_step, "pretrained_backbone": False,
                                 "backbone": "vit_tiny", "variant": "full", "n_windows": 25, "best_epoch": 3})
    write_json(m / "sweeps" / "variant-simple.json", {"mae": 2.65, "rmse": 8.49, "model": {"backbone": "vit_tiny"},
                                                      "pretrained_backbone": False})
    write_json(m / "sweeps" / "backbone-clip_vitb16.json", {"mae": 1.5, "rmse": 4.0, "pretrained_backbone": False,
                                                            "model": {"vfm_blocks": 1}})
    write_json(root / "models" / name / "history.json",
               [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_mae": 2.0 - 0.1 * e}
                for e in range(3)])


@pytest.fixture()
def params(project_root):
    return load_params(project_root / "params.yaml", ["sweeps.backbones=[dinov2_vits14,clip_vitb16,deit_vitb16]",
                                                      "sweeps.variants=[simple,token,temporal,adapter,full]"])


def test_report_tables_gaps_and_lines(tmp_path, params):
    from stvfm.report.markdown import build_report

    write_fixture(tmp_path)
    d = build_report("synthetic", params, tmp_path, maps=False)
    md = (tmp_path / "reports" / "synthetic.md").read_text()
    rows = {r["key"]: r for r in d["rows"]}
    assert rows["ha"]["paper"] == {"rmse": 11.41, "mae": 3.43}  # Table 2, BikeNYC (synthetic is shaped like it)
    assert "| HA | 3.000 | 12.000 | 3.43 | 11.41 | -12.5% | +5.2% |" in md
    assert "| ARIMA | 3.860 | 12.370 | 3.86 | 12.37 | +0.0% | +0.0% |" in md
    assert "| ST-VFM (full) | 1.800 | 3.380 | 1.2 | 3.38 | +50.0% | +0.0% |" in md
    assert "| Persistence | 4.000 | 8.000 | – | – | – | – |" in md
    assert "| simple | 2.650 | 8.490 | 2.65 | 8.49 | +0.0% | +0.0% |" in md  # Table 3 #1 (simple), BikeNYC
    assert "| clip_vitb16 | 1.500 | 4.000 | 1.2 | 3.45 |" in md  # appendix Table 3, CLIP on BikeNYC
    assert "SYNTHETIC DATA — NOT COMPARABLE" in md
    assert "NOT pretrained" in md and "`vit_tiny`" in md
    assert "2024-01-01T00:00 .. 2024-01-10T23:00 (240 steps of 60 min, 10.0 days" in md
    figs = tmp_path / "reports" / "figures" / "synthetic"
    assert sorted(p.name for p in figs.iterdir()) == ["bars.png", "learning_curves.png", "per_step.png"]


def test_comparability_levels():
    from stvfm.datasets.registry import get_spec
    from stvfm.report.collect import comparability, data_span

    local = {"bk2": {"path": "x.npz", "like": "bikenyc2"}, "bk1": {"path": "y.npz", "like": "bikenyc1"},
             "mine": "z.npz"}
    span = data_span({"start": "2016-08-10T00:00:00", "T": 960, "interval_minutes": 30})
    assert span["end"] == "2016-08-29T23:30" and span["days"] == 20.0
    level, paper_ds, text = comparability(get_spec("bk2", local), span)
    assert (level, paper_ds) == ("sample", "bikenyc2") and "SAMPLE" in text
    other = data_span({"start": "2014-08-04T23:00:00", "T": 1369, "interval_minutes": 60})
    assert comparability(get_spec("bk1", local), other)[:2] == ("indicative", "bikenyc1")
    assert comparability(get_spec("mine", local), other)[:2] == ("none", None)
    full = data_span({"start": "2016-08-01T00:00:00", "T": 60 * 24, "interval_minutes": 60})
    assert comparability(get_spec("bikenyc1"), full)[0] == "comparable"
    assert comparability(get_spec("synthetic-crowd"), full)[:2] == ("not-comparable", "crowd")


def test_summary_lists_every_dataset(tmp_path, params):
    from stvfm.report.markdown import build_summary

    write_fixture(tmp_path, "synthetic")
    write_fixture(tmp_path, "bikenyc2_test", start="2016-08-10T00:00:00", T=960, interval=30)
    p = params
    p.local_sources = {"bikenyc2_test": {"path": "x.npz", "like": "bikenyc2"}}
    text = build_summary(["synthetic", "bikenyc2_test"], p, tmp_path).read_text()
    assert "| [synthetic](synthetic.md) | BikeNYC-1 | SYNTHETIC — not comparable |" in text
    assert "| [bikenyc2_test](bikenyc2_test.md) | BikeNYC-2 | sample of the paper's data |" in text
    assert "1.8 / 3.38" in text.replace("1.800 / 3.380", "1.8 / 3.38")


def test_sweep_config_validation(params):
    from stvfm.errors import ConfigError
    from stvfm.config import SweepConfig

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
