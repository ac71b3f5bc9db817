"""Request limits of the served model: how large a request may be, how long it may take, how many run at once.

One set of keys, :class:`stvfm.config.ServeConfig` (``serve:`` in params.yaml), read by ``stvfm serve`` and — from
the environment only, since a registry version has no params.yaml — by the pyfunc under ``mlflow models serve``.
Each key can be set by an env var ``STVFM_SERVE_<KEY>`` (e.g. ``STVFM_SERVE_MAX_WINDOWS=16``), which wins over
params.yaml; ``stvfm serve --set serve.<key>=<value>`` wins over both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from stvfm.config import ServeConfig, _coerce, validate_serve
from stvfm.errors import ConfigError

ENV_PREFIX = "STVFM_SERVE_"
BYTES_PER_NUMBER = 24  # the longest JSON number a client sends for a float ("-1.2345678901234567e+123,")
BODY_SLACK = 64 * 1024  # keys, brackets, last_time
MAX_DERIVED_BODY = 256 * 2**20  # a derived body limit never exceeds 256 MB (set serve.max_body_mb to go beyond)


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``serve`` keys set by ``STVFM_SERVE_<KEY>`` env vars (values read as YAML: ``16``, ``2.5``, ``null``)."""
    import yaml

    environ = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(ServeConfig)}
    out: dict[str, Any] = {}
    for var, text in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in names:
            raise ConfigError(
                f"env {var}: not a serve key; known: " + ", ".join(ENV_PREFIX + n.upper() for n in sorted(names))
            )
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"env {var}: {text[:40]!r} is not a value") from None
    return out


def resolve(base: ServeConfig | None = None, environ: Mapping[str, str] | None = None) -> ServeConfig:
    """``base`` (params.yaml's ``serve`` section, or the defaults) with the ``STVFM_SERVE_*`` env vars applied."""
    import typing

    cfg = base or ServeConfig()
    hints = typing.get_type_hints(ServeConfig)
    env = env_overrides(environ)
    if env:
        cfg = dataclasses.replace(
            cfg, **{k: _coerce(v, hints[k], f"env {ENV_PREFIX}{k.upper()}") for k, v in env.items()}
        )
    validate_serve(cfg, where="serve")
    return cfg


def max_steps(cfg: ServeConfig, history: int) -> int:
    """Longest window accepted: the ``history + 1`` steps the model reads plus ``max_extra_steps``."""
    return int(history) + 1 + int(cfg.max_extra_steps)


def max_body_bytes(cfg: ServeConfig, history: int, grid: tuple[int, int], channels: int) -> int:
    """The body-size limit: ``max_body_mb`` when set, else what the largest legal request needs (``max_windows``
    windows of ``max_steps`` steps, H·W·C numbers of up to 24 characters each, + 64 KB), capped at 256 MB."""
    if cfg.max_body_mb is not None:
        return int(cfg.max_body_mb * 2**20)
    numbers = int(cfg.max_windows) * max_steps(cfg, history) * int(grid[0]) * int(grid[1]) * int(channels)
    return min(numbers * BYTES_PER_NUMBER + BODY_SLACK, MAX_DERIVED_BODY)
