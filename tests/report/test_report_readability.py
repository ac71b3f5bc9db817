"""What a researcher reads (issue 13 item 9): the training profile stated, MAE/RMSE per channel, spread over seeds,
MAE before RMSE in every table, forecast maps with error maps on shared colour scales."""

from __future__ import annotations

import re

import numpy as np

from stvfm.io import read_json, write_json

from report_fixtures import write_fixture


def _extend(root):
    m = root / "metrics" / "synthetic"
    meta = read_json(root / "data" / "split" / "synthetic" / "meta.json")
    write_json(root / "data" / "split" / "synthetic" / "meta.json", {**meta, "channel_names": ["inflow", "outflow"]})
    base = read_json(m / "baselines.json")
    base["stid"].update(mae_std=0.05, rmse_std=0.25, seeds=[0, 1, 2])
    write_json(m / "baselines.json", base)
    test = read_json(m / "test.json")
    test.update(
        profile="default",
        per_channel=[
            {"channel": 0, "name": "inflow", "mae": 1.7, "rmse": 3.2},
            {"channel": 1, "name": "outflow", "mae": 1.9, "rmse": 3.5},
        ],
    )
    write_json(m / "test.json", test)
    write_json(
        root / "models" / "synthetic" / "train.json",
        {
            "profile": "default",
            "epochs_run": 8,
            "best_epoch": 6,
            "backbone": {"name": "vit_tiny", "blocks_used": 4},
            "setup": {
                "profile": "default",
                "epochs": 8,
                "steps_per_epoch": 16,
                "batch_size": 32,
                "lr": 0.002,
                "scheduler": "cosine",
                "workers": 2,
                "backbone": "vit_tiny",
                "vfm_blocks": 4,
            },
        },
    )


def test_report_states_profile_channels_seeds_and_column_order(tmp_path, params):
    from stvfm.report.markdown import build_report

    write_fixture(tmp_path)
    _extend(tmp_path)
    build_report("synthetic", params, tmp_path, maps=False)
    md = (tmp_path / "reports" / "synthetic.md").read_text()
    assert "**Training profile:** `default`" in md and "8 epochs × 16 optimizer steps × batch 32" in md
    assert "best epoch 6 of 1..8" in md and "4 VFM blocks" in md and "lr 0.002" in md
    assert "| method | inflow MAE | inflow RMSE | outflow MAE | outflow RMSE |" in md
    assert "| ST-VFM (full) | 1.700 | 3.200 | 1.900 | 3.500 |" in md
    assert "| STID (3 seeds) | 2.000 ± 0.050 | 4.000 ± 0.250 |" in md
    # every table header lists MAE before RMSE
    for line in md.splitlines():
        if line.startswith("| ") and "MAE" in line and "RMSE" in line:
            assert line.index("MAE") < line.index("RMSE"), line
    assert re.search(r"\| method \| MAE \| RMSE \|", md)  # the paper's Table 2 too


def test_forecast_maps_share_scales_and_show_errors(tmp_path):
    from stvfm.report.figures import forecast_maps

    rng = np.random.default_rng(0)
    truth = rng.random((6, 2, 4, 3)) * 10
    preds = {"ST-VFM": truth + 1.0, "HA": truth * 0.5}
    captured = {}
    import stvfm.report.figures as F

    real_save = F.save_figure

    def spy(fig, out, dpi):
        captured["images"] = [(ax.get_title(), im.get_clim()) for ax in fig.axes for im in ax.get_images()]
        return real_save(fig, out, dpi)

    F.save_figure = spy
    try:
        out = forecast_maps(truth, preds, tmp_path / "m.png", "t", channel=1, channel_name="outflow")
    finally:
        F.save_figure = real_save
    assert out.is_file()
    values = {clim for title, clim in captured["images"] if not title.startswith("|")}
    errors = {clim for title, clim in captured["images"] if title.startswith("|")}
    assert len(values) == 1 and len(errors) == 1  # one colour scale for all value maps, one for all error maps
    assert len(captured["images"]) == 2 * 5  # 2 steps x (truth + 2 methods + 2 error maps)
