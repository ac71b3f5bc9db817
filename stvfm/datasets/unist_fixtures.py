"""Small files in UniST's published layout, one per paper dataset: what ``make smoke`` and the tests download from a
mirror folder, so the reader that users will hit with the real files is the one CI exercises.

Each ``<Name>_short.json`` is written the way UniST publishes its files (``stvfm.data.unist`` documents the layout,
with the evidence in docs/data-sources.md):

* keys ``X_train``, ``X_val``, ``X_test`` (each ``[X, X_period]``) and ``timestamps`` {train, val, test};
* ``X`` (N, 12, H, W): stride-1 windows of 12 steps (6 in + 6 out), one channel, on the dataset's published grid;
* ``X_period`` (N, 12, P, H, W), P = 3 days: ``X_period[i, t, p]`` is the series at step ``a_i + 12 + t - (P - p) * D``
  (``a_i`` window i's first step, D steps a day), the relation UniST issue #19 reports for the published files; so the
  first window starts ``P * D - 12`` steps into the series (its earlier days live only in the period arrays);
* ``timestamps``: integer step indices from the span start for Crowd/Cellular (UniST reads index ``i`` as weekday
  ``((i % 336) // 48 + 2) % 7``, slot ``i % 48``: the span start 2020-11-11 is a Wednesday), (weekday, slot) pairs
  (Monday = 0, slots of the file's own interval) elsewhere;
* the splits cut as a list of windows is cut by ratio (70/15/15, chronological): consecutive splits overlap by 11
  steps (``cut="windows"``; ``cut="series"`` cuts the series first, so the splits are adjacent);
* JSON floats: counts with float round-off (``4.000000000000001``), speeds (km/h, 2 decimals), the Nanjing sets as
  small scaled values -- never written by the reader's code.

The values are a deterministic synthetic city (daily and weekly cycles, hotspots, noise), not UniST's data.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from stvfm.datasets.registry import DATASETS, DatasetSpec
from stvfm.errors import ConfigError

MARKER = "STVFM-FIXTURES.txt"  # written beside the files: the download stage never pins these into the project's lock
WINDOW = 12  # his_len + pred_len of UniST's short-term task
PERIODS = 3  # days of period context per step (UniST issue #12: X_period [3, 12, 16, 8] for BikeNYC)
RATIOS = (0.7, 0.15, 0.15)
CUTS = ("windows", "series")


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode()), seed])


def fixture_series(spec: DatasetSpec, steps: int, seed: int = 0) -> np.ndarray:
    """(steps, H, W) float64 values for ``spec`` from its span start, at the file's interval: counts (bike, taxi,
    TDrive), small scaled values (Crowd, Cellular), speeds (Traffic*). Deterministic in (name, seed)."""
    rng = _rng(spec.name, seed)
    H, W = spec.grid
    spd = 24 * 60 // spec.interval_minutes
    k = np.arange(steps)
    hour = (k % spd) * 24.0 / spd
    start_dow = int((np.datetime64(spec.span[0], "D").astype(np.int64) + 3) % 7)
    dow = (start_dow + k // spd) % 7
    daily = 0.55 + 0.45 * (np.exp(-0.5 * ((hour - 8.5) / 1.5) ** 2) + 0.9 * np.exp(-0.5 * ((hour - 18.0) / 2.0) ** 2))
    weekly = np.where(dow >= 5, 0.75, 1.0)
    yy, xx = np.mgrid[0:H, 0:W]
    weight = np.zeros((H, W))
    for _ in range(4):
        cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(1.0, max(2.0, min(H, W) / 3))
        weight += np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / s**2)
    weight /= weight.max()
    active = rng.random((H, W)) < 0.75  # cells with no road / no station stay 0
    level = (daily * weekly)[:, None, None] * weight[None] * active[None]
    if spec.domain == "Traffic Speed":  # mean speed of the cell's roads: lower at the peaks
        free = rng.uniform(20.0, 45.0, (H, W))
        v = free[None] * (1.15 - 0.45 * (daily * weekly)[:, None, None]) * active[None]
        v = v * rng.lognormal(0.0, 0.05, v.shape)
        return np.round(v, 2)
    if spec.scale_1e3:  # Crowd / Cellular: scaled values, reported x1e3 by the paper
        return np.round(level * 0.05 * rng.lognormal(0.0, 0.15, level.shape), 5)
    counts = rng.poisson(level * (30.0 if spec.grid[0] * spec.grid[1] < 400 else 12.0)).astype(np.float64)
    # float round-off as in the published files (4.000000000000001, 6.999999999999999)
    r = rng.random(counts.shape)
    counts = np.where((r < 0.05) & (counts > 0), np.nextafter(counts, np.inf), counts)
    counts = np.where((r > 0.95) & (counts > 0), np.nextafter(counts, -np.inf), counts)
    return counts


def _stamps(spec: DatasetSpec, steps: np.ndarray) -> np.ndarray:
    """Timestamps of series steps ``steps`` (any shape) in the file's form."""
    if spec.stamps == "index":
        return steps.astype(np.int64)
    minutes = spec.interval_minutes
    t = np.datetime64(spec.span[0], "m") + steps * np.timedelta64(minutes, "m")
    day = t.astype("datetime64[D]")
    weekday = (day.astype(np.int64) + 3) % 7
    slot = (t - day).astype(np.int64) // minutes
    return np.stack([weekday, slot], axis=-1).astype(np.int64)


def fixture_dict(name: str, *, windows: int = 80, periods: int = PERIODS, cut: str = "windows", seed: int = 0) -> dict:
    """The JSON object of ``<Name>_short.json`` for paper dataset ``name`` with ``windows`` windows in all."""
    if name not in DATASETS:
        raise ConfigError(f"fixtures: unknown dataset '{name}'; the ten: {', '.join(DATASETS)}")
    if cut not in CUTS:
        raise ConfigError(f"fixtures: cut '{cut}' is not one of {', '.join(CUTS)}")
    spec = DATASETS[name]
    spd = 24 * 60 // spec.interval_minutes
    first = periods * spd - WINDOW  # the first window whose period context lies inside the series
    counts = [int(windows * RATIOS[0]), int(windows * RATIOS[1])]
    counts.append(windows - sum(counts))
    if min(counts) < 1 or first < 0:
        raise ConfigError(f"fixtures: {windows} windows give splits {counts}; every split needs a window")
    if cut == "windows":
        starts = first + np.arange(windows)
        parts = np.split(starts, np.cumsum(counts)[:2])
    else:  # the series cut first, then each part windowed (adjacent splits)
        parts, a = [], first
        for n in counts:
            parts.append(a + np.arange(n))
            a += n + WINDOW - 1
    steps = int(parts[-1][-1]) + WINDOW
    series = fixture_series(spec, steps, seed)
    out: dict = {}
    stamps = {}
    off = np.arange(WINDOW)
    for split, a in zip(("train", "val", "test"), parts, strict=True):
        idx = a[:, None] + off[None, :]  # (N, 12) series steps
        X = series[idx]  # (N, 12, H, W)
        pidx = idx[:, :, None] + WINDOW - (periods - np.arange(periods))[None, None, :] * spd  # (N, 12, P)
        out[f"X_{split}"] = [X.tolist(), series[pidx].tolist()]
        stamps[split] = _stamps(spec, idx).tolist()
    out["timestamps"] = stamps
    return out


def file_name(name: str) -> str:
    if name not in DATASETS:
        raise ConfigError(f"fixtures: unknown dataset '{name}'; the ten: {', '.join(DATASETS)}")
    return DATASETS[name].sources[0].filename


def write_fixture(name: str, out_dir: str | Path, **kw) -> Path:
    """Write ``<out_dir>/<Name>_short.json`` (the dataset's published file name); return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / file_name(name)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(fixture_dict(name, **kw), f)
    tmp.replace(path)
    return path


def write_fixtures(
    out_dir: str | Path, names: Iterable[str] | None = None, *, archive: str | None = None, **kw
) -> list[Path]:
    """One fixture per dataset (default: the ten); with ``archive`` also (or instead, see the CLI) the folder as one
    zip ``<out_dir>/<archive>`` whose members sit under ``dataset/``, as UniST's README has users unpack it."""
    names = list(names) if names else list(DATASETS)
    for n in names:
        file_name(n)  # every name known before anything is written
    paths = [write_fixture(n, out_dir, **kw) for n in names]
    (Path(out_dir) / MARKER).write_text(
        "Generated by `stvfm fixtures` (stvfm.datasets.unist_fixtures): small files in UniST's layout with synthetic\n"
        "values, NOT UniST's data. The download stage refuses to pin them into the project's data/sources.lock.json;\n"
        "use them with env STVFM_SOURCES_LOCK pointing at another lock file (as `make smoke` and the tests do).\n"
    )
    if archive:
        import zipfile

        z = Path(out_dir) / archive
        with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in paths:
                zf.write(p, f"dataset/{p.name}")
        paths.append(z)
    return paths
