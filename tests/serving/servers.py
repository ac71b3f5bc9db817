"""A model server as a test's own process: started in a new session on a free loopback port, waited for on
``/ping`` with a bound, stopped by its process group (SIGTERM, then SIGKILL after 30 s). Used by the slow server
tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), then SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def running(cmd: list[str], cwd: Path, env: dict, url: str, timeout: float = 300) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` (a server for ``url``), wait until ``GET url/ping`` answers 200, yield it, stop it."""
    import requests

    log_path = Path(cwd) / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, f"server not up in {timeout} s: " + log_path.read_text()[-3000:]
                time.sleep(0.5)
            yield proc
        finally:
            stop(proc)
