"""Which Ray to use, decided once, and never an endless wait.

* No address configured (neither ``train.ray_address`` nor env ``RAY_ADDRESS``): a **private local Ray**
  (``ray.init(address="local")``). A plain ``ray.init()`` would instead join whatever cluster the machine's
  ``<RAY_TMPDIR or /tmp>/ray/ray_current_cluster`` file names, and when that cluster died uncleanly it retries
  "Failed to connect to GCS" forever.
* An address configured: it must answer within ``timeout_s`` (default 60 s). A refused or unreachable address, or a
  ``ray.init`` that does not return in time, ends with one line naming the address, where it came from and the fix.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stvfm.errors import ConfigError

CONNECT_TIMEOUT_S = 60.0
ENV = "RAY_ADDRESS"

# Noise reducers and safe defaults (measured on Ray 2.60); set before the local cluster starts so
# the controller and workers inherit them.
RAY_ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1",
    # Ray starts worker processes at nice 15; on a busy machine the training workers then lose the CPU to anything
    # else. Workers of a local cluster started here run at normal priority, like the in-process loop.
    "RAY_worker_niceness": "0",
    # worker log lines relayed to the driver: no ANSI colour codes around the "(RayTrainWorker pid=…)" prefix, so
    # DVC/CI log files stay readable
    "RAY_COLOR_PREFIX": "0",
}


def ray_env() -> None:
    for k, v in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configured_address(params_address: str | None = None) -> tuple[str | None, str]:
    """(address, where it came from): ``train.ray_address`` first, then env ``RAY_ADDRESS``; (None, '') when neither."""
    if params_address:
        return params_address, "params train.ray_address"
    env = os.environ.get(ENV, "").strip()
    if env:
        return env, f"env {ENV}"
    return None, ""


def _address_file() -> Path:
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    return Path(base or "/tmp") / "ray" / "ray_current_cluster"


def _fix(address: str, source: str) -> str:
    return (
        f"start that cluster (`ray start --head`), correct {source}, or unset it "
        f"({'remove train.ray_address' if source.startswith('params') else f'unset {ENV}'}) to run on a private "
        f"local Ray"
    )


def _host_port(address: str, source: str) -> tuple[str, int] | None:
    """The TCP endpoint to probe for ``address`` (GCS ``host:port``, ``ray://host:port``); None when not probeable."""
    a = address
    if a == "auto":
        f = _address_file()
        if not f.is_file():
            raise ConfigError(
                f"Ray address 'auto' (from {source}): no running cluster recorded in {f}; {_fix(address, source)}"
            )
        a = f.read_text().strip()
    for scheme in ("ray://", "http://", "https://"):
        if a.startswith(scheme):
            a = a[len(scheme) :]
    a = a.split("/", 1)[0]
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def probe(address: str, source: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ConfigError unless something accepts TCP connections at ``address`` within ``timeout_s``."""
    hp = _host_port(address, source)
    if hp is None:
        return
    host, port = hp
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, left))):
                return
        except ConnectionRefusedError:
            raise ConfigError(
                f"Ray cluster at {address} (from {source}) refuses connections: nothing listens on "
                f"{host}:{port} (a dead cluster?); {_fix(address, source)}"
            ) from None
        except OSError as e:
            if time.monotonic() + 1 >= deadline:
                raise ConfigError(
                    f"Ray cluster at {address} (from {source}) did not answer within {timeout_s:g} s "
                    f"({type(e).__name__}: {e}); {_fix(address, source)}"
                ) from None
            time.sleep(1.0)


def preflight(params_address: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Before anything is opened (MLflow run, outputs): a configured Ray address must answer (no-op without one)."""
    address, source = configured_address(params_address)
    if address is not None and address != "local":
        probe(address, source, timeout_s)


def _watchdog(message: str, timeout_s: float, on_timeout: Callable[[str], None] | None) -> threading.Timer:
    def fire() -> None:
        if on_timeout is not None:
            on_timeout(message)
            return
        print(message, file=sys.stderr, flush=True)
        os._exit(2)  # ray.init is stuck in a retry loop that cannot be interrupted: end the process, one line

    t = threading.Timer(timeout_s, fire)
    t.daemon = True
    return t


def init_ray(
    params_address: str | None = None,
    *,
    timeout_s: float = CONNECT_TIMEOUT_S,
    on_timeout: Callable[[str], None] | None = None,
    **local_kwargs: Any,
) -> bool:
    """Start a private local Ray (no address configured) or join the configured one within ``timeout_s``.
    ``local_kwargs`` (num_cpus, dashboard ...) apply to a local start only. Returns True when Ray was started here."""
    import ray

    address, source = configured_address(params_address)
    common = {k: local_kwargs.pop(k) for k in ("logging_level", "log_to_driver", "runtime_env") if k in local_kwargs}
    if address is None or address == "local":
        ray.init(address="local", **common, **local_kwargs)
        return True
    probe(address, source, timeout_s)
    msg = (
        f"error: Ray cluster at {address} (from {source}) did not accept this driver within {timeout_s:g} s; "
        f"{_fix(address, source)}"
    )
    dog = _watchdog(msg, timeout_s, on_timeout)
    dog.start()
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(
            f"cannot join the Ray cluster at {address} (from {source}): {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}; {_fix(address, source)}"
        ) from None
    finally:
        dog.cancel()
    return False
