"""`stvfm serve` on 127.0.0.1 under the hostile-but-fair client of issue 23: every request gets a 4xx with a reason in
under 2 s, nothing is echoed, and the server's memory stays within its stated bound (docs/serving.md: idle + 16 x the
body limit with the default workers=1, max_queue=4). The server is this test's own process group (tests/serving/
servers.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time

import numpy as np
import pytest

from .servers import free_port, running
from .version_fixtures import raw_window
from tiny_city import ROOT

pytestmark = pytest.mark.slow
MB = 2**20


def post_raw(port: int, body, headers: dict[str, str], chunked: bool = False, timeout: float = 10.0):
    """POST over a plain socket; ``body``: bytes or an iterable of bytes, sent until the server answers or closes.
    Returns (status, answer body, seconds)."""
    if isinstance(body, bytes) and not chunked and "Content-Length" not in headers:
        headers = {**headers, "Content-Length": str(len(body))}
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t = time.perf_counter()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    s.sendall(f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
    s.setblocking(False)
    got = b""
    for part in [body] if isinstance(body, bytes) else body:
        if chunked:
            part = f"{len(part):x}\r\n".encode() + part + b"\r\n"
        view = memoryview(part)
        while view:
            try:
                view = view[s.send(view) :]
            except BlockingIOError:
                try:
                    got += s.recv(1 << 16)  # the server may answer before taking the whole body
                except BlockingIOError:
                    time.sleep(0.001)
                if got:
                    break
            except OSError:  # it closed the connection: the answer is in the socket already
                break
        if got:
            break
    else:
        if chunked:
            with contextlib.suppress(OSError):
                s.sendall(b"0\r\n\r\n")
    s.setblocking(True)
    s.settimeout(timeout)
    try:
        while b"\r\n\r\n" not in got or len(got) < _total(got):
            d = s.recv(1 << 16)
            if not d:
                break
            got += d
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    seconds = time.perf_counter() - t
    head, _, rest = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, rest, seconds


def _total(got: bytes) -> int:
    head, _, _ = got.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 1 << 62


def test_stvfm_serve_answers_every_hostile_request_with_4xx_fast_and_bounded_memory(tiny_versions, tmp_path):
    import psutil
    import requests

    from stvfm.serving.forecaster import load_forecaster

    x, last = raw_window(tiny_versions.root, steps=7)
    last_s = int(last.astype(np.int64))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "STVFM_SERVE_READ_TIMEOUT_S": "1",
    }
    url = f"http://127.0.0.1:{port}"
    peak = [0]
    stop = threading.Event()
    with running(
        [
            sys.executable,
            "-m",
            "stvfm.cli",
            "serve",
            "--model",
            str(tiny_versions.tid),
            "--port",
            str(port),
            "--root",
            str(tmp_path),
        ],
        tmp_path,
        env,
        url,
    ) as proc:
        limits = requests.get(f"{url}/metadata", timeout=5).json()["limits"]
        body_limit = limits["max_body_bytes"]
        server = psutil.Process(proc.pid)
        H = {"Content-Type": "application/json"}

        def req(flow, lt, **extra):
            return json.dumps({"inputs": {"flow": flow, "last_time": lt}, **extra}).encode()

        good = req(x[None].tolist(), [last_s])
        ok = requests.post(f"{url}/invocations", data=good, headers=H, timeout=60)
        assert ok.status_code == 200, ok.text[:500]
        pred = np.asarray(ok.json()["predictions"], dtype=np.float32)
        ref = load_forecaster(tiny_versions.tid).predict(x[None], np.array([last_s]))
        assert np.abs(pred - ref).max() == 0.0  # the served answer is the forecaster's, bit for bit
        rss0 = server.memory_info().rss

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        window = json.dumps(x.tolist()).encode()  # one window of 7 steps, ~5 KB of JSON
        n_big = 97 * MB // len(window)  # the 97 MB body: ~20,000 windows
        big = [b'{"inputs": {"flow": ['] + [window + b","] * (n_big - 1) + [window + b'], "last_time": [1]}}']
        big_len = sum(map(len, big))
        long_step = json.dumps(x[0].astype(int).tolist()).encode()  # counts as integers: ~50 MB in all
        long_win = [b'{"inputs": {"flow": [['] + [long_step + b","] * 65371 + [long_step + b']], "last_time": [1]}}']
        strs = x[None].tolist()
        strs[0][2][3][4][1] = "2.0"
        bools = x[None].tolist()
        bools[0][2][3][4][1] = False
        cases = [
            (
                "97 MB body, 20,000 windows, Content-Length",
                lambda: post_raw(port, big, {**H, "Content-Length": str(big_len)}),
                413,
                "at most",
            ),
            (
                "97 MB body, 20,000 windows, chunked",
                lambda: post_raw(port, big, H, chunked=True),
                413,
                f"larger than {body_limit} bytes",
            ),
            (
                "50 MB body, one window of 65,372 steps",
                lambda: post_raw(port, long_win, {**H, "Content-Length": str(sum(map(len, long_win)))}),
                413,
                "at most",
            ),
            (
                "one window of 40 steps (under the body limit)",
                lambda: post_raw(port, req(np.concatenate([x] * 6)[None, :40].tolist(), [last_s]), H),
                413,
                "40 steps in a window",
            ),
            (
                "65 windows",
                lambda: post_raw(port, req(np.repeat(x[None], 65, 0).tolist(), [last_s] * 65), H),
                413,
                "at most 64",
            ),
            ("no Content-Type", lambda: post_raw(port, good, {}), 415, "no Content-Type"),
            (
                "JSON nested 10,000 levels",
                lambda: post_raw(port, b"[" * 10000 + b"]" * 10000, H),
                400,
                "not valid JSON",
            ),
            (
                "malformed JSON, 50 MB",
                lambda: post_raw(port, [b'{"inputs": '] + [b"x" * MB] * 50, {**H, "Content-Length": str(50 * MB + 11)}),
                413,
                "at most",
            ),
            (
                "malformed JSON, 1 MB",
                lambda: post_raw(port, b'{"inputs": {"flow": [' + b"1.5, " * 200000 + b"x", H),
                400,
                "not valid JSON",
            ),
            (
                "last_time 4611686018427387904",
                lambda: post_raw(port, req(x[None].tolist(), [4611686018427387904]), H),
                400,
                "outside 1900-01-01",
            ),
            ("numeric strings", lambda: post_raw(port, req(strs, [last_s]), H), 400, "numbers only, got strings"),
            ("booleans", lambda: post_raw(port, req(bools, [last_s]), H), 400, "booleans"),
            (
                "last_time a string",
                lambda: post_raw(port, req(x[None].tolist(), [str(last_s)]), H),
                400,
                "must be an integer",
            ),
            (
                "fractional last_time",
                lambda: post_raw(port, req(x[None].tolist(), [last_s + 0.5]), H),
                400,
                "whole number of seconds",
            ),
            (
                "unknown keys",
                lambda: post_raw(port, req(x[None].tolist(), [last_s], params={"a": 1}), H),
                400,
                "unknown key(s) 'params'",
            ),
            (
                "3e38 everywhere",
                lambda: post_raw(port, req(np.full_like(x[None], 3e38).tolist(), [last_s]), H),
                400,
                "beyond 10000 training standard deviations",
            ),
            (
                "a body that stops coming",
                lambda: post_raw(port, [good[:100]], {**H, "Content-Length": str(len(good))}),
                408,
                "did not arrive within serve.read_timeout_s=1",
            ),
        ]
        table = []
        for name, send, status, reason in cases:
            got, answer, seconds = send()
            table.append((name, got, seconds, answer[:120]))
            assert got == status, (name, got, answer[:300])
            msg = json.loads(answer)["message"]
            assert reason in msg, (name, msg)
            assert len(answer) < 600 and "Traceback" not in msg and ".py" not in msg, msg
            assert str(tmp_path) not in msg and str(ROOT) not in msg and str(tiny_versions.root) not in msg, msg
            assert seconds < 2.0 + (1.0 if status == 408 else 0.0), (name, seconds)
        hostile_peak = (peak[0] - rss0) / MB
        largest = req(np.repeat(np.concatenate([x, x, x, x, x[:3]])[None], 64, 0).tolist(), [last_s] * 64)
        assert len(largest) <= body_limit
        r = requests.post(f"{url}/invocations", data=largest, headers=H, timeout=120)  # the largest legal request
        assert r.status_code == 200 and np.asarray(r.json()["predictions"]).shape == (64, 6, 16, 8, 2), r.text[:300]
        stop.set()
        rss1 = server.memory_info().rss
        grown, peak_grown = (rss1 - rss0) / MB, (peak[0] - rss0) / MB
        bound = 16 * body_limit / MB  # docs/serving.md: (10 x workers + workers + max_queue + 1) x the body limit
        print(
            f"\nserver RSS {rss0 / MB:.0f} MB after warm-up, peak +{hostile_peak:.0f} MB under the hostile requests, "
            f"+{peak_grown:.0f} MB with the largest legal one, after +{grown:.0f} MB "
            f"(bound +{bound:.0f} MB, body limit {body_limit / MB:.1f} MB)"
        )
        for name, got, seconds, answer in table:
            print(f"  {name:48s} -> {got} in {seconds:.3f} s: {answer.decode(errors='replace')}")
        assert peak_grown < bound and grown < bound, (peak_grown, grown, bound)
        again = requests.post(f"{url}/invocations", data=good, headers=H, timeout=60)  # still serving
        assert again.status_code == 200 and np.abs(np.asarray(again.json()["predictions"], np.float32) - ref).max() == 0
        watcher.join(timeout=5)
