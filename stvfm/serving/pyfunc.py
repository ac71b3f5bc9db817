"""The MLflow pyfunc of an ST-VFM model version (``mlflow models serve``, ``mlflow.pyfunc.load_model``).

Request (``POST /invocations``, JSON)::

    {"inputs": {"flow": <(B, T, H, W, C) numbers, T >= history, original scale>,
                "last_time": <(B,) unix seconds of each window's last step>}}

``last_time`` is part of the signature (and required) only when the model uses time identities; otherwise it is
ignored. Answer: ``{"predictions": <(B, horizon, H, W, C), original scale>}`` — what ``stvfm predict`` gives for
the same window.

What MLflow hands over has been read whole and parsed by MLflow's scoring server; from there the pyfunc applies the
checks of ``stvfm serve`` (:func:`stvfm.serving.request.check_arrays`: windows per request, steps per window, types,
``last_time`` range and grid, NaN/inf, negative counts, values far outside the training range; limits from the
``STVFM_SERVE_*`` env vars, :mod:`stvfm.serving.limits`; the limits apply only inside the scoring server, not to
``mlflow.pyfunc.load_model(...).predict`` in one's own process) and stops the forecast at MLflow's own request timeout
(``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, ``mlflow models serve --timeout``) or ``STVFM_SERVE_TIMEOUT_S``, the
shorter. A refusal is HTTP 400 with the reason alone as ``message`` (:class:`RequestRefused` keeps MLflow from
prefixing it with a dump of the input). Body size, Content-Type and JSON errors happen in MLflow before the model is
called: ``stvfm serve`` is the server that limits those (docs/serving.md).
"""

from __future__ import annotations

import os
import time

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from stvfm.errors import StvfmError
from stvfm.serving.forecaster import Cancelled, load_version
from stvfm.serving.limits import resolve
from stvfm.serving.request import check_arrays
from stvfm.serving.version import CONFIG_FILE, WEIGHTS_FILE


class RequestRefused(MlflowException):
    """An ``INVALID_PARAMETER_VALUE`` (HTTP 400) whose message stays the reason: MLflow's scoring server rewrites
    ``e.message`` to ``"Failed to predict data '<the whole input>'. Error: <reason>"``; this class ignores that."""

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_reason"):  # MlflowException.__init__ sets it first; later rewrites are ignored
            self._reason = str(value)


def serving() -> bool:
    """True inside MLflow's scoring server (``mlflow models serve`` sets this before the first request)."""
    return os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "").lower() == "true"


def request_timeout(limits) -> float:
    """The shorter of MLflow's scoring-server timeout and ``serve.timeout_s``."""
    mlflow_timeout = os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "").strip()
    return min(float(limits.timeout_s), float(mlflow_timeout) if mlflow_timeout.isdigit() else float("inf"))


class STVFMPyfunc(mlflow.pyfunc.PythonModel):
    _skip_type_hint_validation = True  # the signature is explicit (tensor specs); predict validates the rest itself

    def load_context(self, context) -> None:
        from pathlib import Path

        cfg, weights = Path(context.artifacts["config"]), Path(context.artifacts["weights"])
        if (cfg.name, weights.name) != (CONFIG_FILE, WEIGHTS_FILE) or cfg.parent != weights.parent:
            raise ValueError(f"not an ST-VFM model version (artifacts {sorted(context.artifacts)})")
        self.forecaster = load_version(cfg.parent)  # tensors + JSON only, digest and parts checked
        self.limits = resolve()  # STVFM_SERVE_* env vars over the defaults

    def predict(self, context, model_input, params=None):
        f = self.forecaster
        if not serving():  # in-process use (mlflow.pyfunc.load_model): the model's checks, no request limits
            try:
                return f.predict(*check_arrays(model_input, f, None))
            except StvfmError as e:
                raise RequestRefused(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        deadline = time.monotonic() + request_timeout(self.limits)
        try:
            flow, last = check_arrays(model_input, f, self.limits)
            return f.predict(flow, last, check=False, deadline=deadline, max_batch=self.limits.forward_batch)
        except Cancelled:
            raise RequestRefused(
                "the forecast took longer than the request timeout and was stopped; send fewer windows per request",
                error_code=INVALID_PARAMETER_VALUE,
            ) from None
        except StvfmError as e:
            raise RequestRefused(str(e), error_code=INVALID_PARAMETER_VALUE) from None
