"""One request to the served model: ``{"inputs": {"flow": (B, T, H, W, C), "last_time": (B,)}}`` checked for size,
type and range, parsed into arrays — or refused with a status and a short reason that never echoes the body.

Used by ``stvfm serve`` (raw JSON bytes: :func:`parse_body`) and by the MLflow pyfunc (arrays MLflow already parsed:
:func:`check_arrays`). The model-level checks (grid, channels, history, NaN/inf, negative counts, values far outside
the training range, ``last_time`` range and grid) are :meth:`Forecaster.check`'s, shared with ``stvfm predict``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stvfm.config import ServeConfig
from stvfm.errors import DataError
from stvfm.serving.inputs import check_unix_seconds
from stvfm.serving.limits import max_steps

REQUEST_KEYS = ("inputs",)
INPUT_KEYS = ("flow", "last_time")


class RequestError(DataError):
    """A request refused with an HTTP status (400 unless said) and a one-line reason."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = int(status)


def _names(keys) -> str:
    shown = [repr(str(k)[:40]) for k in list(keys)[:3]]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _form(time_identity: bool) -> str:
    return '{"inputs": {"flow": [...] (B, T, H, W, C)' + (', "last_time": [...] (B,)' if time_identity else "") + "}}"


def check_size(b: int, t: int, forecaster, cfg: ServeConfig) -> None:
    """Windows per request and steps per window within the limits (checked before the numbers are converted)."""
    if b > cfg.max_windows:
        raise RequestError(f"{b} windows in one request; at most {cfg.max_windows} (serve.max_windows)", 413)
    most = max_steps(cfg, forecaster.history)
    if t > most:
        raise RequestError(
            f"{t} steps in a window; at most {most}: the model reads the last "
            f"{forecaster.history + 1}, plus serve.max_extra_steps={cfg.max_extra_steps}",
            413,
        )


def _flow_array(flow: Any, forecaster, cfg: ServeConfig) -> np.ndarray:
    if not isinstance(flow, list):
        raise RequestError(f"'flow' must be a nested list (B, T, H, W, C) of numbers, got a {type(flow).__name__}")
    if not flow:
        raise RequestError("no window given ('flow' is empty)")
    if not all(isinstance(w, list) for w in flow):
        raise RequestError("'flow' must be (B, T, H, W, C): each window a list of steps")
    check_size(len(flow), max(len(w) for w in flow), forecaster, cfg)
    try:
        arr = np.asarray(flow)
    except (ValueError, OverflowError, TypeError):
        raise RequestError(
            "'flow' is ragged (windows, steps or rows of different lengths) or holds non-numbers; "
            "it must be a regular (B, T, H, W, C) array of numbers"
        ) from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings", "S": "strings", "O": "nulls, objects or integers beyond 64 bits"}
        raise RequestError(f"'flow' must hold numbers only, got {what.get(arr.dtype.kind, arr.dtype.name)}")
    return arr


def _last_time_array(last: Any, b: int) -> np.ndarray:
    if not isinstance(last, list):
        raise RequestError(
            f"'last_time' must be a list of {b} integer(s) (unix seconds of each window's last step), "
            f"got a {type(last).__name__}"
        )
    if len(last) != b:
        raise RequestError(f"'last_time' has {len(last)} value(s); give one per window ({b})")
    out = np.empty(b, dtype=np.int64)
    for i, v in enumerate(last):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            kind = "a boolean" if isinstance(v, bool) else f"a {type(v).__name__}"
            raise RequestError(f"'last_time'[{i}] must be an integer (unix seconds), got {kind}")
        if isinstance(v, float) and not (np.isfinite(v) and v.is_integer()):
            raise RequestError(f"'last_time'[{i}] must be a whole number of seconds, got a fraction or NaN/inf")
        out[i] = check_unix_seconds(int(v), f"'last_time'[{i}]")
    return out


def parse_inputs(doc: Any, forecaster, cfg: ServeConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """A parsed JSON request -> (flow, last_time) arrays, or :class:`RequestError`."""
    f = forecaster
    if not isinstance(doc, dict):
        raise RequestError(f"the request must be a JSON object {_form(f.time_identity)}")
    extra = [k for k in doc if k not in REQUEST_KEYS]
    if extra:
        raise RequestError(f"unknown key(s) {_names(extra)} in the request; it is {_form(f.time_identity)}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict):
        raise RequestError(f"the request must be {_form(f.time_identity)}")
    extra = [k for k in inputs if k not in INPUT_KEYS]
    if extra:
        raise RequestError(f"unknown key(s) {_names(extra)} in 'inputs'; known: flow, last_time")
    if "flow" not in inputs:
        raise RequestError(f"no 'flow' in 'inputs': the request is {_form(f.time_identity)}")
    flow = _flow_array(inputs["flow"], f, cfg)
    last = None
    if "last_time" in inputs:  # checked also when the model does not read it (then it is ignored)
        last = _last_time_array(inputs["last_time"], len(inputs["flow"]))
    elif f.time_identity:
        raise RequestError(
            "this model uses time identities: give 'last_time', the unix seconds of each window's "
            "last step, one per window"
        )
    f.check(flow, last if f.time_identity else None)
    return flow, last if f.time_identity else None


def parse_body(body: bytes, forecaster, cfg: ServeConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The raw JSON body of ``POST /invocations`` -> (flow, last_time), or :class:`RequestError`."""
    import orjson

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        msg = str(getattr(e, "msg", "") or "").splitlines()[0][:80] if getattr(e, "msg", "") else "malformed"
        raise RequestError(f"the body is not valid JSON ({msg} at byte {getattr(e, 'pos', '?')})") from None
    flow, last = parse_inputs(doc, forecaster, cfg)
    if flow.dtype.kind in "iuf" and (b"true" in body or b"false" in body):
        # every string of a valid request is a known key, so these bytes are JSON booleans among the numbers
        # (numpy would have read them as 1 and 0)
        raise RequestError("'flow' must hold numbers only, got booleans among them")
    return flow, last


def check_arrays(model_input: Any, forecaster, cfg: ServeConfig | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The pyfunc's input (a dict of arrays MLflow parsed from ``inputs``) checked like :func:`parse_body`; no size
    limits when ``cfg`` is None."""
    f = forecaster
    if not isinstance(model_input, dict) or "flow" not in model_input:
        raise RequestError(f"the request must be {_form(f.time_identity)}")
    extra = [k for k in model_input if k not in INPUT_KEYS]
    if extra:
        raise RequestError(f"unknown key(s) {_names(extra)} in 'inputs'; known: flow, last_time")
    flow = np.asarray(model_input["flow"])
    if flow.dtype.kind not in "iuf":
        raise RequestError(f"'flow' must hold numbers only, got dtype {flow.dtype.name}")
    if cfg is not None and flow.ndim >= 2:
        check_size(flow.shape[0], flow.shape[1], f, cfg)
    last = model_input.get("last_time")
    if last is not None:
        a = np.asarray(last)
        if a.ndim != 1 or a.dtype.kind not in "iuf":
            raise RequestError("'last_time' must be a list of integers (unix seconds), one per window")
        last = _last_time_array(a.tolist(), flow.shape[0] if flow.ndim else 0)
    elif f.time_identity:
        raise RequestError(
            "this model uses time identities: give 'last_time', the unix seconds of each window's "
            "last step, one per window"
        )
    f.check(flow, last if f.time_identity else None)
    return flow, last if f.time_identity else None
