"""The MLflow pyfunc of an ST-VFM model version (``mlflow models serve``, ``mlflow.pyfunc.load_model``).

Request (``POST /invocations``, JSON)::

    {"inputs": {"flow": <(B, T, H, W, C) numbers, T >= history, original scale>,
                "last_time": <(B,) unix seconds of each window's last step>}}

``last_time`` is part of the signature (and required) only when the model uses time identities; otherwise it is
ignored. Answer: ``{"predictions": <(B, horizon, H, W, C), original scale>}`` — what ``stvfm predict`` gives for
the same window. A bad request (wrong shape, NaN, negative counts, missing ``last_time``) is answered with HTTP 400
and the reason (an ``MlflowException`` with ``INVALID_PARAMETER_VALUE``).
"""
from __future__ import annotations

import mlflow.pyfunc
import numpy as np

from stvfm.errors import StvfmError
from stvfm.serving.forecaster import load_version
from stvfm.serving.version import CONFIG_FILE, WEIGHTS_FILE


class STVFMPyfunc(mlflow.pyfunc.PythonModel):
    _skip_type_hint_validation = True  # the signature is explicit (tensor specs); predict validates the rest itself

    def load_context(self, context) -> None:
        from pathlib import Path

        cfg, weights = Path(context.artifacts["config"]), Path(context.artifacts["weights"])
        if (cfg.name, weights.name) != (CONFIG_FILE, WEIGHTS_FILE) or cfg.parent != weights.parent:
            raise ValueError(f"not an ST-VFM model version (artifacts {sorted(context.artifacts)})")
        self.forecaster = load_version(cfg.parent)  # tensors + JSON only

    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        f = self.forecaster
        try:
            if not isinstance(model_input, dict) or "flow" not in model_input:
                raise StvfmError('the request must be {"inputs": {"flow": [...](B, T, H, W, C)'
                                 + (', "last_time": [...](B,)' if f.time_identity else "") + "}}")
            flow = np.asarray(model_input["flow"])
            last = model_input.get("last_time") if f.time_identity else None
            return f.predict(flow, None if last is None else np.asarray(last), where=None)
        except StvfmError as e:
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
