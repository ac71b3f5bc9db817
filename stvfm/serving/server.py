"""``stvfm serve``: the model version behind a small ASGI app on uvicorn, with the limits ``mlflow models serve``
cannot enforce.

Same protocol as ``mlflow models serve`` (``POST /invocations`` with ``{"inputs": {"flow": ..., "last_time": ...}}``
-> ``{"predictions": ...}``; ``GET /ping``, ``/health``, ``/version``), plus ``GET /metadata`` (the model and the
limits). What it adds, in the order a request meets it:

1. **admission**: at most ``serve.workers + serve.max_queue`` requests in progress; one more gets 503 at once (no body
   read). uvicorn's ``limit_concurrency`` backs this up at the connection level.
2. **Content-Type** must be ``application/json`` (415 otherwise, also when missing).
3. **body size**: a ``Content-Length`` above the limit gets 413 before a byte of the body is read; a chunked body is
   counted while it streams in and refused (413) at the first byte beyond it. The body must arrive within
   ``serve.read_timeout_s`` (408).
4. **parsing** (orjson: no recursion beyond 1024 levels) and the checks of :mod:`stvfm.serving.request` (400 / 413).
5. **forecast** in one of ``serve.workers`` threads, ``serve.forward_batch`` windows per forward pass (so a request's
   memory does not grow with its window count), under a deadline of ``serve.timeout_s`` from arrival: the
   forecaster checks it before every layer and stops the work (504); no forecast outlives its request.
6. the answer: the forecast must be finite (422 otherwise), encoded with orjson straight from the float32 array, with
   a ``Server-Timing`` header (parse, forecast, encode, total in ms).

Every refusal is ``{"error_code": ..., "message": <reason>}`` with the reason first, never the body, a trace or a
file path; an unexpected error is logged here and answered 500 with a generic message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stvfm.config import ServeConfig
from stvfm.errors import DataError
from stvfm.serving.forecaster import Cancelled, Forecaster, NonFiniteForecast
from stvfm.serving.limits import max_body_bytes, max_steps
from stvfm.serving.request import RequestError, parse_body

log = logging.getLogger(__name__)

ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _Refused(Exception):
    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = int(status), reason, list(headers or [])


class _Gone(Exception):
    """The client disconnected: nothing to answer."""


def _json(obj: Any) -> bytes:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return None


class ForecastApp:
    """The ASGI app: one :class:`Forecaster`, the limits of ``cfg``, ``cfg.workers`` forecast threads."""

    def __init__(self, forecaster: Forecaster, cfg: ServeConfig, *, model: str = ""):
        self.f, self.cfg, self.model = forecaster, cfg, str(model)
        self.max_body = max_body_bytes(cfg, forecaster.history, forecaster.grid, forecaster.channels)
        self.admit = int(cfg.workers) + int(cfg.max_queue)
        self.in_progress = 0
        self._pool = ThreadPoolExecutor(int(cfg.workers), thread_name_prefix="stvfm-forecast")
        self._slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope.get("path", ""), scope.get("method", "")
        try:
            if path == "/invocations":
                if method != "POST":
                    raise _Refused(405, "use POST /invocations", [(b"allow", b"POST")])
                await self._invocations(scope, receive, send)
            elif path in ("/ping", "/health", "/version", "/metadata"):
                if method != "GET":
                    raise _Refused(405, f"use GET {path}", [(b"allow", b"GET")])
                body = (
                    b"\n"
                    if path in ("/ping", "/health")
                    else _json(self.info() if path == "/metadata" else {"stvfm": _version()})
                )
                await self._send(send, 200, body)
            else:
                raise _Refused(404, "no such endpoint; POST /invocations, GET /ping, /health, /version, /metadata")
        except _Refused as e:
            await self._send(
                send,
                e.status,
                _json({"error_code": ERROR_CODES.get(e.status, "BAD_REQUEST"), "message": e.reason}),
                e.headers,
                close=True,
            )
        except _Gone:
            return
        except Exception:  # never a trace to the client; the log has it
            log.exception("unexpected error answering %s %s", method, path[:100])
            await self._send(
                send,
                500,
                _json({"error_code": "INTERNAL_ERROR", "message": "internal error; the server log has the details"}),
                close=True,
            )

    @staticmethod
    async def _send(
        send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, close: bool = False
    ) -> None:
        h = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
        if close:
            h.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": h})
        await send({"type": "http.response.body", "body": body})

    def info(self) -> dict[str, Any]:
        f = self.f
        return {
            "model": self.model,
            "dataset": f.dataset,
            "grid": list(f.grid),
            "channels": f.channels,
            "history": f.history,
            "horizon": f.horizon,
            "interval_minutes": f.interval_minutes,
            "time_identity": f.time_identity,
            "limits": {
                "max_body_bytes": self.max_body,
                "max_windows": self.cfg.max_windows,
                "max_steps": max_steps(self.cfg, f.history),
                "timeout_s": self.cfg.timeout_s,
                "read_timeout_s": self.cfg.read_timeout_s,
                "workers": self.cfg.workers,
                "forward_batch": self.cfg.forward_batch,
                "max_queue": self.cfg.max_queue,
            },
        }

    # ------------------------------------------------------------------ POST /invocations
    async def _invocations(self, scope, receive, send) -> None:
        t0 = time.monotonic()
        deadline = t0 + float(self.cfg.timeout_s)
        ctype = _header(scope, b"content-type")
        if not ctype:
            raise _Refused(415, "no Content-Type: send the request as JSON with 'Content-Type: application/json'")
        mime, *params = (p.strip().lower() for p in ctype.split(";"))
        if mime != "application/json":
            raise _Refused(415, f"Content-Type {mime[:60]!r} is not supported; send application/json")
        for p in params:
            if p.startswith("charset=") and p[8:].strip('"') not in ("utf-8", "utf8"):
                raise _Refused(415, "only UTF-8 JSON is accepted (charset=utf-8)")
        if self.in_progress >= self.admit:
            raise _Refused(
                503,
                f"busy: {self.in_progress} requests in progress (serve.workers + serve.max_queue = "
                f"{self.admit}); retry later",
                [(b"retry-after", b"1")],
            )
        self.in_progress += 1
        try:
            body = await self._read_body(scope, receive)
            if self._slots is None:
                self._slots = asyncio.Semaphore(int(self.cfg.workers))
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=max(deadline - time.monotonic(), 0.001))
            except (asyncio.TimeoutError, TimeoutError):
                raise _Refused(
                    503,
                    f"busy: no forecast slot free within serve.timeout_s={self.cfg.timeout_s:g} s; retry later",
                    [(b"retry-after", b"1")],
                ) from None
            try:
                loop = asyncio.get_running_loop()
                status, out, timing = await loop.run_in_executor(self._pool, self._score, body, deadline)
            finally:
                self._slots.release()
        finally:
            self.in_progress -= 1
        if status != 200:
            raise _Refused(status, out.decode())
        timing["total"] = time.monotonic() - t0
        await self._send(
            send,
            200,
            out,
            [(b"server-timing", ", ".join(f"{k};dur={v * 1e3:.1f}" for k, v in timing.items()).encode())],
        )

    async def _read_body(self, scope, receive) -> bytes:
        cl = _header(scope, b"content-length")
        if cl is not None:
            if not cl.strip().isdigit():
                raise _Refused(400, "Content-Length is not a number")
            if int(cl) > self.max_body:
                raise _Refused(
                    413,
                    f"body of {int(cl)} bytes; at most {self.max_body} (serve.max_body_mb; by default "
                    f"what serve.max_windows windows of the longest accepted length need)",
                )
        buf = bytearray()

        async def read() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise _Gone()
                buf.extend(msg.get("body", b""))
                if len(buf) > self.max_body:
                    raise _Refused(413, f"body larger than {self.max_body} bytes (serve.max_body_mb)")
                if not msg.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(read(), timeout=float(self.cfg.read_timeout_s))
        except (asyncio.TimeoutError, TimeoutError):
            raise _Refused(
                408, f"the body did not arrive within serve.read_timeout_s={self.cfg.read_timeout_s:g} s"
            ) from None
        return bytes(buf)

    def _score(self, body: bytes, deadline: float) -> tuple[int, bytes, dict[str, float]]:
        """Parse, check, forecast, encode (in a worker thread): (status, answer or reason, seconds per phase — sent
        as a ``Server-Timing`` header with the answer)."""
        timing: dict[str, float] = {}
        try:
            t = time.monotonic()
            if t > deadline:
                raise Cancelled("the request waited longer than serve.timeout_s")
            flow, last = parse_body(body, self.f, self.cfg)
            del body
            timing["parse"] = time.monotonic() - t
            y = self.f.predict(flow, last, check=False, deadline=deadline, max_batch=self.cfg.forward_batch)
            timing["forecast"] = time.monotonic() - t - timing["parse"]
            out = _json({"predictions": y})
            timing["encode"] = time.monotonic() - t - timing["parse"] - timing["forecast"]
            return 200, out, timing
        except RequestError as e:
            return e.status, str(e).encode(), timing
        except Cancelled:
            return (
                504,
                (
                    f"the forecast took longer than serve.timeout_s={self.cfg.timeout_s:g} s and was stopped; "
                    f"send fewer windows per request"
                ).encode(),
                timing,
            )
        except NonFiniteForecast as e:
            return 422, str(e).encode(), timing
        except DataError as e:  # the model-level checks (Forecaster.check)
            return 400, str(e).encode(), timing


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("stvfm")
    except Exception:  # not installed as a distribution (a source checkout)
        return "unknown"


def serve(
    forecaster: Forecaster, cfg: ServeConfig, *, host: str, port: int, model: str = "", log_level: str = "warning"
) -> None:
    """Run the app on uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    if cfg.torch_threads:
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    app = ForecastApp(forecaster, cfg, model=model)
    config = uvicorn.Config(
        app,
        host=host,
        port=int(port),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        limit_concurrency=app.admit + 8,
        timeout_keep_alive=5,
        http="h11",
        server_header=False,
    )
    log.warning(
        "stvfm serve: %s on http://%s:%d (body <= %d bytes, <= %d windows, timeout %g s, %d worker(s), queue %d)",
        model,
        host,
        port,
        app.max_body,
        cfg.max_windows,
        cfg.timeout_s,
        cfg.workers,
        cfg.max_queue,
    )
    uvicorn.Server(config).run()
