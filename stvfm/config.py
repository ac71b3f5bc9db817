"""Typed configuration. ``params.yaml`` (the DVC params file) is the single source; ``dvc exp run -S a.b=v`` edits it
and every stage re-reads it through :func:`load_params`. CLI flags ``--set a.b=v`` override on top.

Unknown keys are errors (they are usually typos), and the message names the key and the section it was found in.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from stvfm.errors import ConfigError


@dataclass
class SyntheticConfig:
    seed: int = 0
    trips_per_step: float = 400.0  # mean trips started per interval across the whole city (before cycles)
    hotspots: int = 6
    burst_rate: float = 0.01  # probability per interval of a burst event
    span_days: int | None = None  # override the spec's span (days) for small test configs


@dataclass
class DataConfig:
    root: str = "data"
    mirror_dir: str | None = None  # also env STVFM_DATA_MIRROR; looked at before the network
    history: int = 6
    horizon: int = 6
    # ratio protocol: chronological train/val/test fractions; or "published": the file's own train/val/test windows
    # (UniST's files), exactly as UniST feeds them
    split: list[float] | str = field(default_factory=lambda: [0.7, 0.15, 0.15])
    scaler: str = "standard"  # standard | minmax (per channel) | per_cell (per cell & channel); fitted on train only
    chunk_mb: float = 4.0  # target Zarr chunk size
    max_dropped_share: float = 0.05  # grid: warn (stage output + stats.parquet) when more trip endpoints are dropped
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class STIDConfig:
    """STID (Shao et al. 2022; ``model.arch: stid``), sizes as BasicTS's recipe: 32-d embeddings, 3 residual MLPs."""

    input_dim: int = 32  # embedding of a series' input window
    node_dim: int = 32  # spatial identity (one vector per series)
    tod_dim: int = 32  # time-of-day identity (table of steps-per-day rows, from the data interval)
    dow_dim: int = 32  # day-of-week identity
    num_layers: int = 3  # residual MLP layers
    series: str = "cell_channel"  # cell_channel: every (cell, channel) is a series (BasicTS) | cell: a cell's channels
    time_identity: bool = True  # read time-of-day / day-of-week of the last input step from ``time_ids``
    dropout: float = 0.15  # inside each residual MLP layer (BasicTS's STID: nn.Dropout(p=0.15), fixed in its network)
    time_inputs: bool = False  # also feed each input step's time of day / day of week (fractions of a day / week)
    # to the window embedding, as BasicTS's configs do (input_dim 3: value, time in day, day in week)


@dataclass
class ModelConfig:
    arch: str = "stvfm"  # stvfm | stid (deep baseline trained by the same loop)
    variant: str = "full"  # simple | token | temporal | adapter | full  (Table 3: #1, #2, #3, #4, Ours)
    backbone: str = "vit_tiny"  # dinov2_vits14 | clip_vitb16 | deit_vitb16 | vit_tiny
    weights: str | None = None  # local file with pretrained weights
    allow_random_init: bool = False  # build a random-init backbone when no weights are given (logged as such)
    vfm_blocks: int | None = None  # use only the first N blocks of the VFM (None = all, the paper's setting)
    patch_size: int = 2
    d_temporal: int = 64  # D_T
    temporal_layers: int = 3  # temporal context encoder layers (Eq. 6)
    decoder_layers: int = 3  # per-branch temporal decoder layers
    heads: int = 4
    prompt_layers: int | None = None  # None -> the dataset table's value (1 BikeNYC/TaxiNYC, else 2)
    prompt_tokens: int = 8  # L_p
    adapter_dim: int = 64  # Houlsby bottleneck
    lambda_flow: float = 0.5  # λ of Eq. 11
    dropout: float = 0.0
    bf16: bool | str = False  # torch.autocast bf16: true | false | auto (bf16 where this machine's bf16 matmul beats
    # fp32: stvfm.training.precision; resolved to true/false before the model is built)
    time_identity: bool = (
        False  # beyond the paper: time-of-day/day-of-week embeddings on input tokens + decoder queries
    )
    output: str = "plain"  # beyond the paper: plain (the paper) | last | anchored | identity (stvfm.models.output_path)
    stid: STIDConfig = field(default_factory=STIDConfig)  # used when arch == "stid"


@dataclass
class TrainConfig:
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_epochs: int = 0
    scheduler: str = "cosine"  # cosine (per step, to 0) | multistep (MultiStepLR per epoch) | none ("constant" = none)
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which the LR is multiplied by gamma
    gamma: float = 0.5  # multistep: LR factor at each milestone
    optimizer: str = "adamw"  # adamw (decoupled weight decay) | adam (weight_decay as L2, as BasicTS)
    loss: str = "mse"  # mse (Eq. 11, the paper) | mae: the pointwise error of both terms of Eq. 11
    loss_scale: str = "scaled"  # scaled: error of the scaled values | original: after inverse-scaling (as BasicTS)
    seed: int = 0
    patience: int = 5  # early stopping on validation
    num_workers: int = 2  # Ray Train workers (data-parallel)
    ray_address: str | None = None  # join this Ray cluster (also env RAY_ADDRESS); null = a private local Ray
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    max_failures: int = 2
    storage_path: str = "ray_results"  # Ray Train storage (shared storage on a cluster)
    use_ray: bool = True  # False: the plain loop in-process (debugging)
    max_batches_per_epoch: int | None = None  # cap for smoke runs
    compile: bool = False  # torch.compile the train step (stvfm.training.compile; persistent cache)


@dataclass
class EvalConfig:
    n_maps: int = 3  # forecast-vs-truth PNG maps logged per run
    batch_size: int = 64


@dataclass
class ForecastConfig:
    """Batch forecasts (`stvfm forecast`, stage `forecast`): Ray Data map_batches, one model per actor."""

    split: str = "test"  # train | val | test: the windows scored
    batch_size: int = 64  # windows per model call
    concurrency: int = 2  # actors (each holds one model)
    num_cpus: float = 1.0  # per actor
    num_gpus: float = 0.0  # per actor (e.g. 1 on a GPU node)
    torch_threads: int = 1  # intra-op threads per actor
    use_ray: bool = True  # False: the same scoring in a plain loop in this process


@dataclass
class ServeConfig:
    """Online serving limits (`stvfm serve`; docs/serving.md). Each key can also be set by an env var
    ``STVFM_SERVE_<KEY>``, which the pyfunc under `mlflow models serve` reads too (it has no params.yaml)."""

    host: str = "127.0.0.1"  # `stvfm serve` binds here (0.0.0.0: every interface)
    port: int = 5001
    max_windows: int = 64  # windows (B) per request
    max_extra_steps: int = 24  # steps per window beyond the history + 1 the model reads
    max_body_mb: float | None = None  # None: what max_windows windows of the longest length need (24 B a number)
    timeout_s: float = 30.0  # a request's whole life (read, wait, forecast); the forecast is stopped at it
    read_timeout_s: float = 10.0  # the body must have arrived within this
    workers: int = 1  # forecasts run at once (threads sharing the model)
    forward_batch: int = 16  # windows per forward pass: bounds a request's memory, whatever its window count
    max_queue: int = 4  # requests admitted beyond `workers`; one more gets 503 at once
    torch_threads: int | None = None  # intra-op threads of the server (None: torch's default)


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None  # None -> env MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the project root
    register: bool = True
    experiment_prefix: str = "stvfm-"


@dataclass
class Params:
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    local_sources: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    # free-form sections owned by their own modules (validated there)
    tune: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Any] = field(default_factory=dict)
    sweeps: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    # named profiles: ``profiles.<name>`` is a mapping of dotted keys -> values applied on top of this file when
    # ``profile: <name>`` (``default`` = the file as written; ``auto`` = chosen per dataset, see
    # :func:`auto_profile`). CLI ``--set`` / ``dvc exp run -S`` apply after it.
    profile: str = "default"
    profiles: dict[str, Any] = field(default_factory=dict)
    # why ``profile`` is what it is ("auto: real data", "chosen: profile: paper"); set by :func:`load_params`,
    # recorded in MLflow, train.json and the report. Not a params.yaml key.
    profile_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is None and tp is Any:
        return value
    args = get_args(tp)
    if type(None) in args:  # Optional[X]
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _coerce(value, rest[0], where) if len(rest) == 1 else _coerce(value, Union[tuple(rest)], where)  # noqa: UP007 - built at run time from a tuple of types
    if origin in (Union, UnionType):  # X | Y: the member of the value's own kind (a list for a list ...)
        for a in args:
            base = get_origin(a) or a
            if isinstance(base, type) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
                return _coerce(value, a, where)
        kinds = {
            list: "a list",
            str: "a string",
            int: "an integer",
            float: "a number",
            bool: "true/false",
            dict: "a mapping",
        }
        want = " or ".join(kinds.get(get_origin(a) or a, str(a)) for a in args)
        raise ConfigError(f"{where}: expected {want}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls: type, data: Mapping[str, Any], where: str = "params") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: '{k}' is not a section")
    node[keys[-1]] = value


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value, e.g. model.lambda_flow=0.5")
        k, v = item.split("=", 1)
        try:
            value = yaml.safe_load(v)
        except yaml.YAMLError as e:
            reason = str(getattr(e, "problem", None) or "not valid YAML").strip()
            raise ConfigError(
                f"override '{item}': the value of {k.strip()} is not valid YAML ({reason}); quote "
                "strings and close brackets, e.g. model.heads=4 or 'datasets=[a,b]'"
            ) from None
        out.append((k.strip(), value))
    return out


def default_params_path() -> Path:
    return Path(os.environ.get("STVFM_PARAMS", "params.yaml"))


def load_raw(path: str | Path | None = None) -> dict[str, Any]:
    p = Path(path) if path is not None else default_params_path()
    if not p.exists():
        raise ConfigError(f"file '{p}' not found (run from the project root, or set STVFM_PARAMS)")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"file '{p}' is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"file '{p}': top level must be a mapping")
    return raw


def load_params(
    path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = (), *, dataset: str | None = None
) -> Params:
    """Load ``params.yaml`` (or ``path``), apply the chosen profile (``auto``: the one for ``dataset``, see
    :func:`auto_profile`), then ``a.b=v`` overrides; validate; return typed :class:`Params`."""
    raw = load_raw(path)
    if "profile_reason" in raw:
        raise ConfigError("profile_reason: not a params key (it records why a profile was chosen); remove it")
    pairs = list(overrides.items() if isinstance(overrides, Mapping) else parse_overrides(overrides))
    for k, v in pairs:  # an override may choose the profile (or edit one); the profile applies before the rest
        if k == "profile" or k.startswith("profiles."):
            set_dotted(raw, k, v)
    apply_profile(raw, dataset)
    for k, v in pairs:
        set_dotted(raw, k, v)
    try:
        return params_from_dict(raw)
    except ConfigError as e:  # name the file the key is in (overrides are applied to it)
        where = Path(path) if path is not None else default_params_path()
        msg = str(e)
        raise ConfigError(msg if msg.startswith(str(where)) else f"{where}: {msg}") from None


AUTO = "auto"  # profile: auto -> REAL_PROFILE for real data, "default" for synthetic data
REAL_PROFILE = "real"  # the recipe that converged on the real NYC samples (params.yaml profiles.real)


def is_synthetic(dataset: str, local_sources: Mapping[str, Any] | None = None) -> bool:
    """``synthetic`` and ``synthetic-<name>`` (generated here); every other dataset is real data (the ten,
    ``<name>-trips``, ``local_sources`` entries). The dataset table resolves the names; this rule needs only them."""
    if dataset in (local_sources or {}):
        return False
    return dataset == "synthetic" or dataset.startswith("synthetic-")


def auto_profile(dataset: str | None, raw: Mapping[str, Any]) -> tuple[str, str]:
    """(profile, reason) of ``profile: auto`` for ``dataset``: ``real`` (``profiles.real``, the recipe measured to
    converge on the real NYC samples) for real data, ``default`` (the file as written: the CPU demo budget of
    ``make repro``) for synthetic data or when no dataset is named."""
    if dataset is None:
        return "default", "auto: no dataset named"
    local = raw.get("local_sources") if isinstance(raw.get("local_sources"), Mapping) else {}
    if is_synthetic(dataset, local):
        return "default", "auto: synthetic data"
    if REAL_PROFILE not in (raw.get("profiles") or {}):
        return "default", f"auto: real data, but params has no profiles.{REAL_PROFILE}"
    return REAL_PROFILE, "auto: real data"


def apply_profile(raw: dict[str, Any], dataset: str | None = None) -> None:
    """Apply ``profiles[raw['profile']]`` (dotted key -> value) to ``raw`` in place; ``default`` may be absent.
    ``auto`` is resolved for ``dataset`` first (:func:`auto_profile`); ``raw['profile']`` becomes the profile applied
    and ``raw['profile_reason']`` says why."""
    name = raw.get("profile", "default")
    profiles = raw.get("profiles") or {}
    if not isinstance(name, str):
        raise ConfigError(f"profile: expected a profile name, got {name!r}")
    if not isinstance(profiles, Mapping):
        raise ConfigError(f"profiles: expected a mapping of profile name -> {{dotted.key: value}}, got {profiles!r}")
    if name == AUTO and AUTO not in profiles:
        name, raw["profile_reason"] = auto_profile(dataset, raw)
        raw["profile"] = name
    else:
        raw["profile_reason"] = f"chosen: profile: {name}"
    if name not in profiles:
        if name == "default":
            return
        known = ", ".join(sorted({"default", AUTO, *profiles}))
        raise ConfigError(f"profile: '{name}' is not one of {known} (params key `profiles`)")
    body = profiles[name] or {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"profiles.{name}: expected a mapping of dotted.key -> value, got {body!r}")
    for k, v in body.items():
        if not isinstance(k, str) or k.split(".")[0] in ("profile", "profiles"):
            raise ConfigError(f"profiles.{name}: key {k!r} cannot be set by a profile")
        set_dotted(raw, k, v)


def params_from_dict(raw: Mapping[str, Any]) -> Params:
    p = from_dict(Params, raw)
    validate(p)
    validate_names(p)
    validate_ranges(p)
    return p


# ------------------------------------------------------------------------------------------------ dataset names
# A dataset name becomes a path (data/raw/<name>, data/grid/<name>.zarr, models/<name> ...): one rule, checked where
# names enter (params: datasets, local_sources keys, sweeps.datasets; CLI arguments through check_dataset_name,
# which stvfm.paths.dataset_paths also calls, so no path is ever built from a name that breaks it).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_RULE = "letters, digits, '_', '-', '.' (starting with a letter or digit, no '..', at most 100 characters)"


def with_overrides(params: Params, overrides: Mapping[str, Any]) -> Params:
    """A copy of ``params`` with dotted ``a.b: value`` overrides applied (validated like params.yaml)."""
    import copy

    raw = copy.deepcopy(params.to_dict())
    for k, v in overrides.items():
        set_dotted(raw, k, v)
    return params_from_dict(raw)


def check_dataset_name(name: Any, where: str = "dataset") -> str:
    """Return ``name`` if it is a safe dataset name, else raise :class:`ConfigError` naming ``where``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise ConfigError(f"{where}: {name!r} is not a valid dataset name; use {NAME_RULE}")
    return name


# keys a local_sources entry may have (registry.get_spec, download._copy_local, stages.load_canonical read them)
LOCAL_SOURCE_KEYS = (
    "path",
    "like",
    "title",
    "kind",
    "prompt_layers",
    "scale_1e3",
    "grid",
    "interval_minutes",
    "channels",
    "channel_names",
    "start",
    "end",
    "bbox",
)


def validate_names(p: Params) -> None:
    for i, name in enumerate(p.datasets):
        check_dataset_name(name, f"datasets[{i}]")
    for name, entry in p.local_sources.items():
        check_dataset_name(name, f"local_sources key {name!r}")
        if isinstance(entry, Mapping):
            unknown = sorted(str(k) for k in entry if k not in LOCAL_SOURCE_KEYS)
            if unknown:
                raise ConfigError(
                    f"local_sources.{name}: unknown key(s) {', '.join(unknown)}; allowed: "
                    f"{', '.join(LOCAL_SOURCE_KEYS)}"
                )
        elif not isinstance(entry, str):
            raise ConfigError(
                f"local_sources.{name}: expected a path or a mapping {{path, like, title, ...}}, got {entry!r}"
            )
    sweep_ds = p.sweeps.get("datasets") if isinstance(p.sweeps, Mapping) else None
    if isinstance(sweep_ds, (list, tuple)):
        for i, name in enumerate(sweep_ds):
            check_dataset_name(name, f"sweeps.datasets[{i}]")
    root = Path(p.data.root)
    if root.is_absolute() or ".." in root.parts or not p.data.root.strip():
        raise ConfigError(
            f"data.root: {p.data.root!r} must be a relative folder inside the project "
            "(DVC declares data/... as the stages' outputs)"
        )


# ------------------------------------------------------------------------------------------- value ranges
def validate_ranges(p: Params) -> None:
    """Values that type-check but cannot work; refused when params load (before any run or Ray worker starts)."""
    if not p.train.lr > 0:
        raise ConfigError(f"train.lr: must be > 0, got {p.train.lr}")
    if not p.data.chunk_mb > 0:
        raise ConfigError(f"data.chunk_mb: must be > 0 (target Zarr chunk size in MB), got {p.data.chunk_mb}")
    if not 0 <= p.data.max_dropped_share <= 1:
        raise ConfigError(f"data.max_dropped_share: must be in [0, 1], got {p.data.max_dropped_share}")
    if not p.model.lambda_flow >= 0:
        raise ConfigError(f"model.lambda_flow: must be >= 0 (λ of Eq. 11), got {p.model.lambda_flow}")
    if p.model.prompt_layers is not None and p.model.prompt_layers < 0:
        raise ConfigError(
            f"model.prompt_layers: must be >= 0 (or null for the dataset's value), got {p.model.prompt_layers}"
        )
    if p.model.arch == "stvfm":
        known = known_backbones()
        if p.model.backbone not in known:
            raise ConfigError(
                f"model.backbone: unknown backbone '{p.model.backbone}'; choose one of {', '.join(known)}"
            )


# the built-in backbones of stvfm.models.backbone.BACKBONES (a test checks they agree); that module imports torch,
# so it is consulted only when already loaded (it is wherever a model is built, and where register_backbone was used)
BUILTIN_BACKBONES = ("dinov2_vits14", "clip_vitb16", "deit_vitb16", "vit_tiny")


def known_backbones() -> tuple[str, ...]:
    mod = sys.modules.get("stvfm.models.backbone")
    return tuple(mod.BACKBONES) if mod is not None else BUILTIN_BACKBONES


VARIANTS = ("simple", "token", "temporal", "adapter", "full")
SCALERS = ("standard", "minmax", "per_cell")
SCHEDULERS = ("cosine", "multistep", "none", "constant")
OPTIMIZERS = ("adamw", "adam")
LOSSES = ("mse", "mae")
LOSS_SCALES = ("scaled", "original")


# -------------------------------------------------- sweeps (read by studies/sweep.py and report/collect.py)
SWEEP_PROFILE = {
    "train.use_ray": False,
    "train.epochs": 1,
    "train.max_batches_per_epoch": 8,
    "train.batch_size": 16,
    "model.vfm_blocks": 2,
    "model.allow_random_init": True,
}
SWEEP_BACKBONE_PROFILE = {"train.max_batches_per_epoch": 2, "model.vfm_blocks": 1}


@dataclass
class SweepConfig:
    """params.yaml ``sweeps``: the variant / backbone sweeps (stages sweep_variant, sweep_backbone;
    stvfm.studies.sweep)."""

    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    backbones: list[str] = field(default_factory=lambda: ["dinov2_vits14"])
    profile: dict[str, Any] = field(default_factory=lambda: dict(SWEEP_PROFILE))
    backbone_profile: dict[str, Any] = field(default_factory=lambda: dict(SWEEP_BACKBONE_PROFILE))
    val_windows: int | None = 32  # validation subset per sweep run (picks the best epoch only; test is complete)
    torch_threads: int | None = 1  # measured: 1 thread is 2-5x faster than 2 contended ones on a busy 2-core box

    @classmethod
    def from_params(cls, section: dict | None) -> SweepConfig:
        s = dict(section or {})
        allowed = {"datasets", "variants", "backbones", "profile", "backbone_profile", "torch_threads", "val_windows"}
        if set(s) - allowed:
            raise ConfigError(
                f"params.yaml sweeps: unknown key(s) {', '.join(sorted(set(s) - allowed))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        cfg = cls()
        if "datasets" in s:
            cfg.datasets = list(s["datasets"] or [])
        if "variants" in s:
            cfg.variants = list(s["variants"] or [])
        if "backbones" in s:
            cfg.backbones = list(s["backbones"] or [])
        bad = [v for v in cfg.variants if v not in VARIANTS]
        if bad:
            raise ConfigError(
                f"params.yaml sweeps.variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}"
            )
        bad = [b for b in cfg.backbones if b not in known_backbones()]
        if bad:
            raise ConfigError(
                f"params.yaml sweeps.backbones: unknown {', '.join(bad)}; choose from {', '.join(known_backbones())}"
            )
        for key in ("torch_threads", "val_windows"):
            if key in s:
                v = s[key]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    raise ConfigError(f"params.yaml sweeps.{key}: expected a positive integer or null, got {v!r}")
                setattr(cfg, key, v)
        for key in ("profile", "backbone_profile"):
            if key in s:
                val = s[key] or {}
                if not isinstance(val, dict):
                    raise ConfigError(f"params.yaml sweeps.{key}: expected a mapping of dotted params, got {val!r}")
                setattr(cfg, key, flatten(val))  # nested {train: {epochs: 1}} or dotted {train.epochs: 1}
        return cfg

    def overrides(self, kind: str, value: str) -> dict[str, Any]:
        if kind == "variant":
            if value not in VARIANTS:
                raise ConfigError(f"sweep variant '{value}' is not one of {', '.join(VARIANTS)}")
            return {**self.profile, "model.variant": value}
        if kind == "backbone":
            if value not in known_backbones():
                raise ConfigError(f"sweep backbone '{value}' is not one of {', '.join(known_backbones())}")
            return {**self.profile, **self.backbone_profile, "model.backbone": value}
        raise ConfigError(f"sweep kind '{kind}' is not one of variant, backbone")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(allowed)}")


def validate(p: Params) -> None:
    if isinstance(p.model.bf16, str) and p.model.bf16 != "auto":
        raise ConfigError(f"model.bf16: {p.model.bf16!r} is neither true/false nor 'auto'")
    if p.model.variant not in VARIANTS:
        raise ConfigError(f"model.variant: '{p.model.variant}' is not one of {', '.join(VARIANTS)}")
    s = p.data.split
    if isinstance(s, str):
        if s != "published":
            raise ConfigError(
                f"data.split: {s!r} is neither a list of three fractions (train, val, test) nor "
                "'published' (the file's own train/val/test windows)"
            )
    elif len(s) != 3 or any(x <= 0 for x in s) or abs(sum(s) - 1) > 1e-6:
        raise ConfigError(
            f"data.split: expected three positive fractions summing to 1 (train, val, test) or 'published', got {s}"
        )
    if p.data.history < 1 or p.data.horizon < 1:
        raise ConfigError("data.history and data.horizon must be >= 1")
    if p.model.patch_size < 1:
        raise ConfigError(f"model.patch_size: must be >= 1, got {p.model.patch_size}")
    if p.train.num_workers < 1:
        raise ConfigError(f"train.num_workers: must be >= 1, got {p.train.num_workers}")
    fc = p.forecast
    if fc.split not in ("train", "val", "test"):
        raise ConfigError(f"forecast.split: '{fc.split}' is not one of train, val, test")
    for key in ("batch_size", "concurrency", "torch_threads"):
        if getattr(fc, key) < 1:
            raise ConfigError(f"forecast.{key}: must be >= 1, got {getattr(fc, key)}")
    if fc.num_cpus < 0 or fc.num_gpus < 0:
        raise ConfigError(f"forecast.num_cpus / forecast.num_gpus: must be >= 0, got {fc.num_cpus} / {fc.num_gpus}")
    _one_of("data.scaler", p.data.scaler, SCALERS)
    validate_train(p.train)
    validate_serve(p.serve)


def validate_serve(s: ServeConfig, where: str = "serve") -> None:
    """The serving limits: counts >= 1 (max_queue and max_extra_steps >= 0), times and sizes > 0, a port."""
    for key in ("max_windows", "workers", "forward_batch"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(s, key)}")
    for key in ("max_extra_steps", "max_queue"):
        if getattr(s, key) < 0:
            raise ConfigError(f"{where}.{key}: must be >= 0, got {getattr(s, key)}")
    for key in ("timeout_s", "read_timeout_s", "max_body_mb"):
        v = getattr(s, key)
        if v is not None and not (0 < v < float("inf")):
            raise ConfigError(f"{where}.{key}: must be a positive number, got {v}")
    if s.torch_threads is not None and s.torch_threads < 1:
        raise ConfigError(f"{where}.torch_threads: must be >= 1 or null, got {s.torch_threads}")
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"{where}.port: must be 0..65535, got {s.port}")


def validate_train(t: TrainConfig) -> None:
    """The training-recipe keys (scheduler, optimizer, loss, milestones, gamma)."""
    _one_of("train.scheduler", t.scheduler, SCHEDULERS)
    _one_of("train.optimizer", t.optimizer, OPTIMIZERS)
    _one_of("train.loss", t.loss, LOSSES)
    _one_of("train.loss_scale", t.loss_scale, LOSS_SCALES)
    if any(m < 1 for m in t.milestones) or list(t.milestones) != sorted(set(t.milestones)):
        raise ConfigError(f"train.milestones: expected increasing epochs >= 1, got {t.milestones}")
    if not 0 < t.gamma <= 1:
        raise ConfigError(f"train.gamma: must be in (0, 1], got {t.gamma}")
    if t.scheduler == "multistep" and not t.milestones:
        raise ConfigError(
            "train.milestones: train.scheduler 'multistep' needs at least one milestone epoch, e.g. [1, 50, 80]"
        )


def resolve_model_config(p: Params, spec) -> ModelConfig:
    """The model config for one dataset: fills ``prompt_layers`` from the dataset table when it is null."""
    m = dataclasses.replace(p.model)
    if m.prompt_layers is None:
        m.prompt_layers = spec.prompt_layers
    return m


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}} -> {'a.b': 1}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
