"""Search space: ``tune.space`` (dotted params keys -> distribution) -> a Ray Tune ``param_space``, and back.

Spec per key: ``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}``, ``{randint: [lo, hi]}`` (both ends inclusive),
``{choice: [a, b, ...]}`` or a plain value (fixed). Trial configs are flat ``{"model.lambda_flow": 0.1, ...}``; applying
one to the base params is :func:`trial_params`, which validates the result like params.yaml itself.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from stvfm.config import Params, params_from_dict, set_dotted
from stvfm.errors import ConfigError

KINDS = ("loguniform", "uniform", "randint", "choice")


def _check_key(key: str, base: Mapping[str, Any]) -> None:
    node: Any = base
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(
                f"params.yaml tune.space.{key}: '{key}' is not a params key (e.g. model.lambda_flow, "
                f"model.prompt_layers, model.backbone, train.lr)"
            )
        node = node[part]
    if isinstance(node, Mapping) and node:
        raise ConfigError(f"params.yaml tune.space.{key}: '{key}' is a section; name a single value inside it")


def _parse(key: str, spec: Any) -> tuple[str, Any]:
    if not isinstance(spec, Mapping):
        return "fixed", spec
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(
            f"params.yaml tune.space.{key}: expected one of {{{', '.join(KINDS)}}}: [...], got {dict(spec)}"
        )
    kind, args = next(iter(spec.items()))
    if not isinstance(args, (list, tuple)) or not args:
        raise ConfigError(f"params.yaml tune.space.{key}.{kind}: expected a non-empty list, got {args!r}")
    if kind != "choice":
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"params.yaml tune.space.{key}.{kind}: expected [low, high] numbers, got {args!r}")
        lo, hi = args
        if not lo < hi if kind != "randint" else not lo <= hi:
            raise ConfigError(f"params.yaml tune.space.{key}.{kind}: low must be below high, got {args!r}")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"params.yaml tune.space.{key}.loguniform: bounds must be > 0, got {args!r}")
        if kind == "randint" and (int(lo) != lo or int(hi) != hi):
            raise ConfigError(f"params.yaml tune.space.{key}.randint: bounds must be integers, got {args!r}")
    return kind, list(args)


def parse_space(space: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Validate ``tune.space`` against the params tree ``base``; return ``{key: (kind, args)}``.

    Every corner value (bounds, each choice) is applied to ``base`` and validated, so a bad backbone name or a
    negative λ fails here, before any trial starts.
    """
    parsed = {}
    for key, spec in space.items():
        _check_key(key, base)
        kind, args = _parse(key, spec)
        corners = [args] if kind == "fixed" else args
        for v in corners:
            try:
                trial_params(base, {key: int(v) if kind == "randint" else v})
            except ConfigError as e:
                raise ConfigError(f"params.yaml tune.space.{key}: value {v!r} is invalid: {e}") from e
        parsed[key] = (kind, args)
    return parsed


def to_param_space(parsed: Mapping[str, tuple[str, Any]]) -> dict[str, Any]:
    """Ray Tune ``param_space`` (flat dotted keys)."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, (kind, args) in parsed.items():
        if kind == "loguniform":
            out[key] = tune.loguniform(float(args[0]), float(args[1]))
        elif kind == "uniform":
            out[key] = tune.uniform(float(args[0]), float(args[1]))
        elif kind == "randint":
            out[key] = tune.randint(int(args[0]), int(args[1]) + 1)  # Ray's upper bound is exclusive
        elif kind == "choice":
            out[key] = tune.choice(list(args))
        else:
            out[key] = args
    return out


def trial_params(base: Mapping[str, Any], config: Mapping[str, Any], extra: Mapping[str, Any] = ()) -> Params:
    """Base params tree + ``extra`` dotted overrides + the trial's sampled ``config`` -> validated :class:`Params`."""
    tree = copy.deepcopy(dict(base))
    for k, v in dict(extra).items():
        set_dotted(tree, k, v)
    for k, v in config.items():
        set_dotted(tree, k, _plain(v))
    return params_from_dict(tree)


def _plain(v: Any) -> Any:
    """numpy scalars (from Tune's samplers) -> Python scalars, so YAML/MLflow/dataclasses get plain types."""
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.6g}")  # 6 significant digits: the trial runs exactly what best.yaml records
    return v


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in config.items()}
