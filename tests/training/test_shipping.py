"""train -> evaluate -> the registered version: tags, model card, and batch forecasts from the registry equal those
from the train stage's best.pt (the forecast stage's default)."""

import numpy as np
import pytest
import xarray as xr

from stvfm.serving.batch import run_forecast
from stvfm.training.evaluate import run_evaluate
from stvfm.training.stage import run_train

from .conftest import tiny_params


@pytest.mark.slow
def test_registered_version_card_tags_and_forecasts(tiny_project):
    import mlflow

    p = tiny_params(tiny_project, **{"train.use_ray": False, "train.epochs": 1, "forecast.use_ray": False})
    info = run_train(p, "synthetic", tiny_project)
    res = run_evaluate(p, "synthetic", tiny_project)
    mv = mlflow.MlflowClient().get_model_version("stvfm-synthetic", info["model"]["version"])
    for k in (
        "dataset",
        "data_md5",
        "git_commit",
        "backbone",
        "pretrained_backbone",
        "profile",
        "val_mae",
        "test_mae",
        "test_rmse",
    ):
        assert k in mv.tags, k
    assert mv.tags["backbone"] == "vit_tiny" and mv.tags["pretrained_backbone"] == "False"
    assert float(mv.tags["test_mae"]) == pytest.approx(res["mae"])
    assert f"{res['mae']:.4g} / {res['rmse']:.4g}" in mv.description and "RANDOM INIT" in mv.description

    local = run_forecast(p, "synthetic", tiny_project)
    reg = run_forecast(
        p, "synthetic", tiny_project, model="models:/stvfm-synthetic@champion", out=tiny_project / "reg.zarr"
    )
    a = xr.open_zarr(tiny_project / "forecasts/synthetic.zarr", consolidated=False)
    b = xr.open_zarr(tiny_project / "reg.zarr", consolidated=False)
    assert local["model_version"] == reg["model_version"] == f"stvfm-synthetic/{info['model']['version']}"
    np.testing.assert_array_equal(a["forecast"].values, b["forecast"].values)
    assert a.sizes["origin_time"] == res["n_windows"]
    # the batch forecasts score like evaluate: the same MAE against the raw grid at their valid times
    grid = xr.open_zarr(tiny_project / "data/grid/synthetic.zarr", consolidated=False)["flow"]
    truth = grid.sel(time=a["valid_time"].values.ravel()).values.reshape(a["forecast"].shape)
    assert float(np.abs(a["forecast"].values - truth).mean()) == pytest.approx(res["mae"], rel=1e-4)
