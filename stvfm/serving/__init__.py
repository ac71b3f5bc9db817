"""Using a trained model — one room for it.

- :mod:`version`: the model-version format (config.json + weights.safetensors; no pickles), written by the train stage
  to ``models/<ds>/version/`` and logged to the registry.
- :mod:`forecaster`: :class:`~stvfm.serving.forecaster.Forecaster` (original scale in and out), loading a version from a
  folder or an MLflow URI, ``stvfm predict``'s file-to-file forecast.
- :mod:`inputs`: reading an input series (.npz / .zarr) and time arguments, shared by ``stvfm predict`` and the pyfunc.
- :mod:`request`, :mod:`limits`, :mod:`server`: ``stvfm serve`` — one HTTP request checked and parsed, the request
  limits (``serve:`` in params.yaml, ``STVFM_SERVE_*`` env vars), the ASGI app on uvicorn that enforces them.
- :mod:`pyfunc` (+ ``mlflow_model.py``, the "models from code" file): the MLflow pyfunc behind ``mlflow models serve``.
- :mod:`registry`: the MLflow model registry of versions (register, champion alias, test metrics, download).
- :mod:`batch`: batch forecasts of a split on Ray Data (``stvfm forecast``, stage ``forecast``).
"""
