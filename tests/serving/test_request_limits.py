"""`stvfm serve`'s app, driven in-process through ASGI (no socket): every hostile request of issue 23 gets a 4xx with a
short reason first — never the body, a trace or a path — and limits are enforced before the body is read or parsed
where they can be; a forecast past its deadline is stopped; a good request answers exactly `Forecaster.predict`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import numpy as np
import orjson
import pytest

from stvfm.config import ServeConfig
from stvfm.errors import ConfigError
from stvfm.serving.forecaster import Cancelled, load_forecaster
from stvfm.serving.limits import max_body_bytes, resolve
from stvfm.serving.server import ForecastApp

from .version_fixtures import raw_window

JSON = [(b"content-type", b"application/json")]


@dataclasses.dataclass
class Answer:
    status: int
    body: bytes
    headers: dict
    seconds: float
    received: int  # body bytes the app asked for (receive() calls that delivered data)

    @property
    def message(self) -> str:
        return json.loads(self.body)["message"]


def call(
    app, method="POST", path="/invocations", headers=JSON, body=b"", chunk=1 << 16, length=True, stall=False
) -> Answer:
    """One request through the ASGI app; ``body`` bytes are delivered in ``chunk``-sized messages (``stall``: the
    last one says more is coming, and nothing comes)."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    sent: list[dict] = []
    received = 0

    async def receive():
        nonlocal received
        if not chunks:
            await asyncio.sleep(3600)  # no more body: a client that stalls
        c = chunks.pop(0)
        received += len(c)
        return {"type": "http.request", "body": c, "more_body": bool(chunks) or stall}

    async def send(msg):
        sent.append(msg)

    hdrs = list(headers) + ([(b"content-length", str(len(body)).encode())] if length and method == "POST" else [])
    scope = {"type": "http", "method": method, "path": path, "headers": hdrs}
    t = time.perf_counter()
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], out, dict(start["headers"]), time.perf_counter() - t, received)


@pytest.fixture(scope="module")
def served(tiny_versions):
    f = load_forecaster(tiny_versions.tid)
    x, last = raw_window(tiny_versions.root, steps=7)
    return f, x, int(last.astype(np.int64))


def _app(f, **kw):
    return ForecastApp(f, dataclasses.replace(ServeConfig(), **kw), model="test")


def _req(flow, last=None, **extra):
    inputs = {"flow": flow.tolist() if isinstance(flow, np.ndarray) else flow}
    if last is not None:
        inputs["last_time"] = last
    return json.dumps({"inputs": inputs, **extra}).encode()


def _refused(a: Answer, status: int, reason: str, body: bytes = b""):
    assert a.status == status, (a.status, a.body[:300])
    msg = a.message
    assert reason in msg, msg
    assert len(a.body) < 600 and "Traceback" not in msg and "/tmp" not in msg and 'File "' not in msg, msg
    if len(body) > 200:
        assert body[:200] not in a.body  # no echo of the body
    assert a.seconds < 2.0, a.seconds


def test_good_request_answers_exactly_the_forecaster(served):
    f, x, last = served
    a = call(_app(f), body=_req(np.stack([x, x]), [last, last + 3600]))
    assert a.status == 200, a.body[:300]
    pred = np.asarray(orjson.loads(a.body)["predictions"], dtype=np.float32)
    ref = f.predict(np.stack([x, x]), np.array([last, last + 3600]))
    assert pred.shape == (2, 6, 16, 8, 2)
    assert np.abs(pred - ref).max() == 0.0
    assert call(_app(f), "GET", "/ping").status == 200
    meta = json.loads(call(_app(f), "GET", "/metadata").body)
    assert meta["grid"] == [16, 8] and meta["limits"]["max_windows"] == 64 and meta["limits"]["max_steps"] == 31


def test_hostile_requests_get_4xx_with_a_reason(served):
    f, x, last = served
    w = x[None]
    app = _app(f)
    nested = b"[" * 10000 + b"]" * 10000
    bad_json = b'{"inputs": {"flow": [' + b"1.5, " * 200 + b"oops"
    s_flow = w.tolist()
    s_flow[0][3][2][1][0] = "7.0"
    b_flow = w.tolist()
    b_flow[0][3][2][1][0] = True
    i_flow = w.tolist()
    i_flow[0][-1][2][1][0] = 10**40  # an integer beyond 64 bits
    cases = [
        # (request, status, reason)
        (dict(headers=[]), 415, "no Content-Type"),
        (dict(headers=[(b"content-type", b"text/csv")]), 415, "not supported"),
        (dict(body=nested), 400, "not valid JSON"),
        (dict(body=bad_json), 400, "not valid JSON"),
        (dict(body=b"\xff\xfe{}"), 400, "not valid JSON"),
        (dict(body=b"[1, 2]"), 400, "must be a JSON object"),
        (dict(body=_req(w, [last], params={"x": 1})), 400, "unknown key(s) 'params'"),
        (
            dict(body=json.dumps({"inputs": {"flow": w.tolist(), "last_time": [last], "lat": 1}}).encode()),
            400,
            "unknown key(s) 'lat'",
        ),
        (dict(body=_req(w)), 400, "uses time identities"),
        (dict(body=_req(w, [4611686018427387904])), 400, "outside 1900-01-01"),
        (dict(body=_req(w, [10**30])), 400, "outside 1900-01-01"),
        (dict(body=_req(w, [-(10**30)])), 400, "outside 1900-01-01"),
        (dict(body=_req(w, [last + 0.5])), 400, "whole number of seconds"),
        (dict(body=_req(w, [last + 60])), 400, "not on the model's 60-minute grid"),
        (dict(body=_req(w, [str(last)])), 400, "must be an integer"),
        (dict(body=_req(w, [True])), 400, "got a boolean"),
        (dict(body=_req(w, [last, last])), 400, "one per window"),
        (dict(body=_req(w, last)), 400, "must be a list"),
        (dict(body=_req(s_flow, [last])), 400, "numbers only, got strings"),
        (dict(body=_req(b_flow, [last])), 400, "got booleans among them"),
        (dict(body=_req(np.full_like(w, 3e38), [last])), 400, "beyond 10000 training standard deviations"),
        (dict(body=_req(np.full_like(w, 1e300, dtype=np.float64), [last])), 400, "beyond 10000"),
        (dict(body=_req(i_flow, [last])), 400, "1 value(s) in the last 7 steps lie beyond 10000"),
        (dict(body=_req(w[:, :, :4], [last])), 400, "grid 4x8 does not match"),
        (dict(body=_req(w[:, -4:], [last])), 400, "at least 6 time steps"),
        (dict(body=_req([[[1, 2], [3]]], [last])), 400, "ragged"),
        (dict(body=_req(np.repeat(w, 65, 0), [last] * 65)), 413, "at most 64 (serve.max_windows)"),
        (dict(body=_req(np.concatenate([w] * 5, 1), [last])), 413, "35 steps in a window; at most 31"),
        (dict(body=_req(w, [last]), method="GET"), 405, "use POST"),
        (dict(path="/../../etc/passwd", method="GET"), 404, "no such endpoint"),
    ]
    for kw, status, reason in cases:
        a = call(app, **kw)
        _refused(a, status, reason, kw.get("body", b""))
    neg = w.copy()
    neg[0, -1, 0, 0, 0] = -1
    nan = w.copy()
    nan[0, -1, 0, 0, 0] = np.nan
    _refused(call(app, body=_req(neg, [last])), 400, "1 negative value(s)")
    _refused(call(app, body=_req(nan, [last])), 400, "not valid JSON")  # a bare NaN token is not JSON
    _refused(call(app, body=_req(nan, [last]).replace(b"NaN", b"1e999")), 400, "number is infinity")


def test_body_limits_hold_before_the_body_is_read(served):
    f, x, last = served
    app = _app(f)
    limit = app.max_body
    assert limit == max_body_bytes(ServeConfig(), 6, (16, 8), 2) == 64 * 31 * 256 * 24 + 64 * 1024
    big = b" " * (limit + 1)
    a = call(app, body=big)  # Content-Length over the limit: refused unread
    _refused(a, 413, f"at most {limit}", big)
    assert a.received == 0 and a.headers.get(b"connection") == b"close"
    a = call(app, body=big + b" " * (4 << 20), length=False)  # chunked, no length: read up to the limit only
    _refused(a, 413, f"larger than {limit} bytes")
    assert a.received <= limit + (1 << 16)
    small = _app(f, max_body_mb=0.001)  # 1048 bytes
    _refused(call(small, body=_req(x[None], [last])), 413, "at most 1048")
    a = call(_app(f, read_timeout_s=0.2), body=b'{"inputs": ', length=False, stall=True)  # the rest never comes
    _refused(a, 408, "did not arrive within serve.read_timeout_s=0.2")


def test_busy_server_refuses_at_once_and_a_late_forecast_is_stopped(served):
    f, x, last = served
    app = _app(f, workers=1, max_queue=0)
    app.in_progress = 1  # one request already running
    a = call(app, body=_req(x[None], [last]))
    _refused(a, 503, "busy")
    assert a.received == 0 and a.headers.get(b"retry-after") == b"1"

    # the deadline is checked before every layer: a forecast past it stops within one layer
    calls = []
    hook = f.model.register_forward_pre_hook(lambda m, args: calls.append(m))
    try:
        with pytest.raises(Cancelled):
            f.predict(x[None], np.array([last]), deadline=time.monotonic() - 1)
        assert calls == [], "the model ran past its deadline"
        n_full = len(calls)
        f.predict(x[None], np.array([last]), deadline=time.monotonic() + 60)  # in time: unaffected
        assert len(calls) > n_full
    finally:
        hook.remove()
    # a model whose every layer takes 20 ms (a whole forecast: seconds): stopped at the 50 ms deadline -> 504
    layers = list(f.model.modules())
    assert len(layers) * 0.02 > 2.0
    slow = [m.register_forward_pre_hook(lambda m, args: time.sleep(0.02)) for m in layers]
    try:
        a = call(_app(f, timeout_s=0.05), body=_req(x[None], [last]))
    finally:
        for h in slow:
            h.remove()
    _refused(a, 504, "was stopped")
    assert a.seconds < 1.0  # stopped, not left running to the end
    assert call(_app(f), body=_req(x[None], [last])).status == 200  # the model is whole afterwards


def test_non_finite_forecast_and_unexpected_errors(served, monkeypatch):
    f, x, last = served
    app = _app(f)
    monkeypatch.setattr(f, "_forward", lambda flow, lt: np.full((1, 6, 16, 8, 2), np.nan, np.float32))
    _refused(call(app, body=_req(x[None], [last])), 422, "1536 NaN/inf value(s)")

    def boom(flow, lt):
        raise RuntimeError("secret /home/user/model.py line 3")

    monkeypatch.setattr(f, "_forward", boom)
    a = call(app, body=_req(x[None], [last]))
    assert a.status == 500 and b"secret" not in a.body and b"/home" not in a.body
    assert a.message == "internal error; the server log has the details"


def test_limits_from_env_and_params(monkeypatch):
    cfg = resolve(
        ServeConfig(max_windows=8), {"STVFM_SERVE_MAX_WINDOWS": "16", "STVFM_SERVE_TIMEOUT_S": "2.5", "OTHER": "x"}
    )
    assert cfg.max_windows == 16 and cfg.timeout_s == 2.5 and cfg.max_queue == 4
    assert resolve(ServeConfig(max_windows=8), {}).max_windows == 8
    for env, match in [
        ({"STVFM_SERVE_MAX_WINDOWS": "many"}, "expected an integer"),
        ({"STVFM_SERVE_MAX_WINDOWS": "0"}, "serve.max_windows: must be >= 1"),
        ({"STVFM_SERVE_TIMEOUT": "3"}, "not a serve key"),
        ({"STVFM_SERVE_MAX_BODY_MB": "-1"}, "serve.max_body_mb: must be a positive number"),
    ]:
        with pytest.raises(ConfigError, match=match):
            resolve(ServeConfig(), env)
    assert max_body_bytes(ServeConfig(max_body_mb=2.0), 6, (16, 8), 2) == 2 * 2**20
    assert max_body_bytes(ServeConfig(max_windows=10**6), 6, (64, 64), 2) == 256 * 2**20  # capped


def test_pyfunc_under_mlflow_serve_applies_the_limits_and_keeps_the_reason_first(served, monkeypatch):
    """Inside MLflow's scoring server the pyfunc enforces the same limits on what MLflow parsed, and its refusal's
    message stays the reason (MLflow rewrites e.message to "Failed to predict data '<input>'..." — ignored)."""
    from stvfm.serving.pyfunc import RequestRefused, STVFMPyfunc

    f, x, last = served
    m = STVFMPyfunc()
    m.forecaster, m.limits = f, resolve(ServeConfig(), {"STVFM_SERVE_MAX_WINDOWS": "2"})
    w3 = {"flow": np.repeat(x[None], 3, 0), "last_time": np.array([last] * 3)}
    ok = {"flow": x[None], "last_time": np.array([last])}
    assert m.predict(None, w3).shape == (3, 6, 16, 8, 2)  # in one's own process: no request limits
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
    np.testing.assert_array_equal(m.predict(None, ok), f.predict(x[None], np.array([last])))
    for inputs, reason in [
        (w3, "3 windows in one request; at most 2"),
        ({**ok, "last_time": np.array([4611686018427387904])}, "outside 1900-01-01"),
        ({**ok, "last_time": np.array([last + 0.5])}, "whole number of seconds"),
        ({**ok, "extra": np.array([1])}, "unknown key(s) 'extra'"),
        ({"flow": np.full_like(x[None], 3e38)} | {"last_time": ok["last_time"]}, "beyond 10000"),
    ]:
        with pytest.raises(RequestRefused) as e:
            m.predict(None, inputs)
        err = e.value
        err.message = f"Failed to predict data '{inputs}'. \nError: {err.message}"  # what MLflow's server does
        assert reason in err.message and "Failed to predict" not in err.serialize_as_json()
        assert err.get_http_status_code() == 400
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "0")  # MLflow's timeout: the forecast stops there
    with pytest.raises(RequestRefused, match="took longer than the request timeout and was stopped"):
        m.predict(None, ok)
