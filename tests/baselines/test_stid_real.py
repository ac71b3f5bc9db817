"""Slow: the STID baseline, trained with params.yaml's recipe for a fixed small budget on the real bikenyc2_test
sample, beats HA on validation (so a broken STID or recipe cannot slip by). Skips without ../shared."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_stid_beats_ha_on_validation_of_bikenyc2(tmp_path, project_root, real_data_dir):
    import torch

    from stvfm.baselines.common import load_series_split, score
    from stvfm.baselines.fit import _train_state, with_overrides
    from stvfm.baselines.ha import HistoricalAverage
    from stvfm.baselines.run import BaselinesConfig
    from stvfm.config import load_params
    from stvfm.data.stages import run_flow, run_grid, run_split
    from stvfm.datasets.download import run_download
    from stvfm.paths import dataset_paths

    name = "bikenyc2_test"
    params = load_params(
        project_root / "params.yaml",
        [f"local_sources.{name}.path={real_data_dir / (name + '.npz')}", f"datasets=[{name}]"],
    )
    for f in (run_download, run_grid, run_flow, run_split):
        f(name, params, tmp_path)
    data = load_series_split(dataset_paths(name, tmp_path))
    ha = HistoricalAverage.fit(data.series, data.times, data.interval_minutes, data.train_range, "day")
    ha_val = score(data, lambda s, t0: ha.forecast(t0, data.history, data.horizon), split="val")

    cfg = BaselinesConfig.from_params(params.baselines)
    sp = with_overrides(params, {**cfg.stid_overrides, "train.epochs": 15, "train.seed": 0})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state, _ = _train_state(sp, name, tmp_path, "stid-real-test")
    finally:
        torch.set_num_threads(threads)
    best = state["loop"]["best_metrics"]
    assert best["val_mae"] < ha_val["mae"], (best, ha_val["mae"])
    assert best["val_rmse"] < ha_val["rmse"], (best, ha_val["rmse"])
