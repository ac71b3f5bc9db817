"""Baselines under the same splits, windows and metrics as ST-VFM (paper §4.1, appendix §4).

- :mod:`persistence`: repeat the last input step.
- :mod:`ha`: historical average of the same time-of-day slot over the train split (appendix: "average of historical data
  from corresponding periods in previous days").
- :mod:`arima`: ARIMA per cell and channel, fitted on the train series, forecasting 6 steps from each window.
- STID (Shao et al. 2022), the deep baseline: the network is :mod:`stvfm.models.stid` (``model.arch=stid``); it is
  trained by the project's training loop (:mod:`fit`) with the reference recipe of ``baselines.stid`` (:mod:`run`).
- :mod:`run`: runs them for a dataset, writes ``metrics/<ds>/baselines.json`` and logs to MLflow.
"""
