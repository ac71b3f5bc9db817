"""The embedded default: a deterministic virtual city, generated as raw trip records (Parquet).

The city is an ``H x W`` grid of ~0.5 km cells placed at NYC-like coordinates (it is not a map of a real place).
Hotspots of three types shape where trips start and end:

* residential areas send trips out in the morning and attract them in the evening,
* business areas attract trips in the morning and send them back in the evening (the commute),
* leisure areas are busy at midday, in the evening and at weekends,

plus a uniform background. The city-wide rate follows a daily cycle (morning/evening peaks on weekdays, one broad
afternoon peak at weekends), a weekly cycle (day-of-week factors) and a per-day "weather" factor. Occasional bursts
(events) pull extra trips into one cell and release them a few hours later. Counts are Poisson, trip durations
follow distance (bike speed) with log-normal noise, so a trip often ends in a later interval than it started.
Inflow, outflow and their change over time (the ST flow) therefore all carry signal.

Output: ``trips.parquet`` with the canonical trip schema :data:`TRIP_SCHEMA` (``start_time``, ``end_time`` as
``timestamp[ns]``, naive local time; ``start_lat``, ``start_lon``, ``end_lat``, ``end_lon`` as float64), sorted by
``start_time``, one row group per simulated week. Every record starts and ends inside ``[start, end)`` and inside
``bbox``. The same seed and parameters give a byte-identical file.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stvfm.config import SyntheticConfig
from stvfm.datasets.registry import DatasetSpec
from stvfm.datasets.trip_schema import TRIP_SCHEMA
from stvfm.errors import ConfigError

CENTER = (40.75, -73.98)  # the virtual city's centre (lat, lon)
CELL_DEG_LAT = 0.0045  # ~0.5 km
SPEED_KMH = 12.0  # bike speed for trip durations
NEAR_TRIP_SHARE = 0.25  # share of trips that go to a neighbouring cell (or stay in their cell)
CHUNK_DAYS = 7  # one Parquet row group per simulated week
_DOW_FACTOR = np.array([0.97, 1.0, 1.02, 1.03, 1.06, 1.0, 0.95])  # Mon..Sun
_NS = 1_000_000_000

# hotspot types (rows of the cell-weight matrix)
BUSINESS, RESIDENTIAL, LEISURE, BACKGROUND = range(4)


@dataclass(frozen=True)
class SyntheticInfo:
    """What was generated; the download stage copies it into manifest.json."""

    records: int
    start: str  # ISO, first interval start
    end: str  # ISO, exclusive
    steps: int
    interval_minutes: int
    grid: tuple[int, int]
    bbox: tuple[float, float, float, float]  # lat_min, lon_min, lat_max, lon_max
    channels: int
    channel_names: tuple[str, ...]
    channel_def: dict[str, str]
    generator: dict[str, Any]


def synthetic_bbox(grid: tuple[int, int]) -> tuple[float, float, float, float]:
    """The bounding box of the virtual city for a grid ``(H, W)``; cells are square (~0.5 km)."""
    h, w = grid
    dlat = CELL_DEG_LAT
    dlon = CELL_DEG_LAT / math.cos(math.radians(CENTER[0]))
    lat0 = round(CENTER[0] - h * dlat / 2, 6)
    lon0 = round(CENTER[1] - w * dlon / 2, 6)
    return (lat0, lon0, round(lat0 + h * dlat, 6), round(lon0 + w * dlon, 6))


def channel_layout(channels: int) -> tuple[tuple[str, ...], dict[str, str]]:
    """Channel names and what each one counts. Two channels: inflow, outflow (the real NYC order); one: trip starts."""
    if channels == 2:
        return ("inflow", "outflow"), {
            "inflow": "trips ending in the cell during the interval (end_time, end_lat/lon)",
            "outflow": "trips starting in the cell during the interval (start_time, start_lat/lon)",
        }
    if channels == 1:
        return ("outflow",), {
            "outflow": "trips starting in the cell during the interval (start_time, start_lat/lon); "
            "the synthetic stand-in for a one-channel dataset"
        }
    raise ConfigError(f"synthetic city: cannot make {channels} channels from trip records (only 1 or 2)")


def _check(cfg: SyntheticConfig) -> None:
    bad = []
    if not cfg.trips_per_step > 0:
        bad.append(f"data.synthetic.trips_per_step must be > 0 (got {cfg.trips_per_step})")
    if cfg.hotspots < 0:
        bad.append(f"data.synthetic.hotspots must be >= 0 (got {cfg.hotspots})")
    if not 0 <= cfg.burst_rate <= 1:
        bad.append(f"data.synthetic.burst_rate must be in [0, 1] (got {cfg.burst_rate})")
    if cfg.span_days is not None and cfg.span_days < 1:
        bad.append(f"data.synthetic.span_days must be >= 1 or null (got {cfg.span_days})")
    if bad:
        raise ConfigError("params.yaml: " + "; ".join(bad))


def _g(h: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Gaussian bump on the 24 h circle."""
    d = (h - mu + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / sigma) ** 2)


def _intensity(h: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """City-wide trip rate by hour of day (before normalisation)."""
    wd = 0.12 + 1.6 * _g(h, 8.25, 1.0) + 1.3 * _g(h, 17.75, 1.3) + 0.5 * _g(h, 12.5, 1.5) + 0.35 * _g(h, 21.0, 1.8)
    we = 0.12 + 0.9 * _g(h, 14.0, 3.2) + 0.3 * _g(h, 21.0, 2.0)
    return np.where(weekend, we, wd)


def _origin_mix(h: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """(n, 4) weights of business/residential/leisure/background for trip origins at hour ``h``."""
    wd = np.stack(
        [
            0.15 + 1.8 * _g(h, 17.5, 1.4),  # leave work in the evening
            0.15 + 1.8 * _g(h, 8.0, 1.2),  # leave home in the morning
            0.3 + 0.8 * _g(h, 13.0, 2.5) + 0.8 * _g(h, 21.5, 1.5),
            np.full_like(h, 0.4),
        ],
        axis=-1,
    )
    we = np.stack(
        [
            0.2 + 0.3 * _g(h, 17.0, 2.0),
            0.3 + 0.5 * _g(h, 11.0, 2.0),
            0.4 + 1.6 * _g(h, 15.0, 3.0),
            np.full_like(h, 0.4),
        ],
        axis=-1,
    )
    return np.where(weekend[..., None], we, wd)


def _dest_mix(h: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """(n, 4) weights for trip destinations at hour ``h``: the commute reversed."""
    wd = np.stack(
        [
            0.15 + 1.8 * _g(h, 8.5, 1.2),  # arrive at work in the morning
            0.15 + 1.8 * _g(h, 18.0, 1.6) + 0.5 * _g(h, 23.0, 2.0),  # back home in the evening
            0.3 + 0.8 * _g(h, 13.0, 2.5) + 0.8 * _g(h, 19.5, 1.5),
            np.full_like(h, 0.4),
        ],
        axis=-1,
    )
    we = np.stack(
        [
            0.2 + 0.3 * _g(h, 12.0, 2.0),
            0.3 + 0.8 * _g(h, 19.0, 2.5),
            0.4 + 1.6 * _g(h, 14.0, 3.0),
            np.full_like(h, 0.4),
        ],
        axis=-1,
    )
    return np.where(weekend[..., None], we, wd)


def _city_weights(grid: tuple[int, int], hotspots: int, rng: np.random.Generator) -> np.ndarray:
    """(4, H*W) cell weights per hotspot type, each row summing to 1."""
    h, w = grid
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy.ravel() + 0.5, xx.ravel() + 0.5
    weights = np.zeros((4, h * w))
    weights[BACKGROUND] = 1.0
    size = max(h, w)
    # residential areas are broad, business districts compact, leisure in between
    sigma_range = {BUSINESS: (0.06, 0.12), RESIDENTIAL: (0.15, 0.3), LEISURE: (0.08, 0.16)}
    for k in range(hotspots):
        kind = (BUSINESS, RESIDENTIAL, LEISURE)[k % 3]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sigma = rng.uniform(*sigma_range[kind]) * size
        amp = rng.uniform(0.6, 1.4)
        weights[kind] += amp * np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / sigma**2)
    for kind in (BUSINESS, RESIDENTIAL, LEISURE):
        if weights[kind].sum() == 0:  # fewer than three hotspots: that type falls back to the background
            weights[kind] = 1.0
        weights[kind] += 0.02 * weights[kind].max()  # every cell sees a little of every type
    return weights / weights.sum(axis=1, keepdims=True)


def _span(spec: DatasetSpec, cfg: SyntheticConfig) -> tuple[dt.datetime, int]:
    start = dt.datetime.fromisoformat(spec.span[0])
    days = cfg.span_days if cfg.span_days is not None else (dt.date.fromisoformat(spec.span[1]) - start.date()).days + 1
    return start, int(days)


def generate_trips(spec: DatasetSpec, cfg: SyntheticConfig, out: str | Path) -> SyntheticInfo:
    """Write the virtual city's trip records for ``spec``'s grid, interval and span (``cfg.span_days`` shortens it)
    to the Parquet file ``out``; return what the manifest needs. Deterministic in ``cfg`` and ``spec``."""
    _check(cfg)
    channel_names, channel_def = channel_layout(spec.channels)
    interval = int(spec.interval_minutes)
    if interval <= 0 or (24 * 60) % interval:
        raise ConfigError(f"dataset '{spec.name}': interval_minutes={interval} must divide a day")
    start, days = _span(spec, cfg)
    grid = (int(spec.grid[0]), int(spec.grid[1]))
    H, W = grid
    n_cells = H * W
    bbox = synthetic_bbox(grid)
    dlat = (bbox[2] - bbox[0]) / H
    dlon = (bbox[3] - bbox[1]) / W
    km_lat, km_lon = 111.2, 111.2 * math.cos(math.radians(CENTER[0]))
    spd = 24 * 60 // interval
    steps = days * spd
    interval_s = interval * 60
    t0_ns = int(np.datetime64(start, "ns").astype(np.int64))
    end_ns = t0_ns + steps * interval_s * _NS

    weights = _city_weights(grid, cfg.hotspots, np.random.default_rng([cfg.seed, 1_000_001]))
    day_factor = np.exp(np.random.default_rng([cfg.seed, 1_000_002]).normal(0.0, 0.12, size=days))
    minutes = np.arange(0, 7 * 24 * 60, 15) / 60.0  # normalise the intensity to a weekly mean of 1
    wk = np.repeat(np.arange(7), len(minutes) // 7) >= 5
    norm = float(np.mean(_intensity(minutes % 24, wk) * _DOW_FACTOR[np.repeat(np.arange(7), len(minutes) // 7)]))

    # destination tables per (weekend, hour): flat monotone CDF so one searchsorted samples every trip
    hours = np.arange(24) + 0.5
    dest_p = np.concatenate([_dest_mix(hours, np.zeros(24, bool)), _dest_mix(hours, np.ones(24, bool))]) @ weights
    dest_cdf = np.cumsum(dest_p / dest_p.sum(axis=1, keepdims=True), axis=1)
    dest_cdf[:, -1] = 1.0
    flat_cdf = (np.arange(48)[:, None] + dest_cdf).ravel()
    event_p = weights[LEISURE] + weights[BUSINESS]
    event_p = event_p / event_p.sum()
    hour_steps = max(1, 60 // interval)

    out = Path(out)
    records = 0
    first_weekday = start.weekday()
    with pq.ParquetWriter(out, TRIP_SCHEMA, compression="zstd", write_statistics=True) as writer:
        for chunk, d0 in enumerate(range(0, days, CHUNK_DAYS)):
            rng = np.random.default_rng([cfg.seed, chunk])
            nd = min(CHUNK_DAYS, days - d0)
            S = nd * spd
            step_abs = d0 * spd + np.arange(S)
            day = step_abs // spd
            hod = ((step_abs % spd) + 0.5) * interval / 60.0
            dow = (first_weekday + day) % 7
            weekend = dow >= 5
            lam = cfg.trips_per_step * _intensity(hod, weekend) * _DOW_FACTOR[dow] * day_factor[day] / norm
            p_origin = _origin_mix(hod, weekend) @ weights
            p_origin /= p_origin.sum(axis=1, keepdims=True)
            counts = rng.poisson(lam[:, None] * p_origin)

            # bursts: extra arrivals into one cell for an hour, departures from it 1-3 hours later
            forced_step, forced_origin, forced_dest = [], [], []
            for s in np.flatnonzero(rng.random(S) < cfg.burst_rate):
                cell = int(rng.choice(n_cells, p=event_p))
                size = cfg.trips_per_step * rng.uniform(0.5, 1.5)
                arr = np.arange(s, min(s + hour_steps, S))
                n_arr = rng.poisson(size / hour_steps, size=len(arr))
                for st, n in zip(arr, n_arr, strict=True):
                    if n:
                        forced_step.append(np.full(n, st))
                        forced_origin.append(rng.choice(n_cells, size=n, p=p_origin[st]))
                        forced_dest.append(np.full(n, cell))
                lag = int(rng.integers(1, 4)) * hour_steps
                dep = np.arange(s + hour_steps + lag, min(s + 2 * hour_steps + lag, S))
                if len(dep):
                    counts[dep, cell] += rng.poisson(size / hour_steps, size=len(dep))

            idx = np.repeat(np.arange(S * n_cells), counts.ravel())
            step, origin = idx // n_cells, idx % n_cells
            bucket = weekend[step].astype(np.int64) * 24 + np.floor(hod[step]).astype(np.int64)
            dest = np.searchsorted(flat_cdf, bucket + rng.random(len(idx)), side="right") - bucket * n_cells
            near = rng.random(len(idx)) < NEAR_TRIP_SHARE
            oy, ox = np.divmod(origin[near], W)
            ny = np.clip(oy + rng.integers(-1, 2, size=len(oy)), 0, H - 1)
            nx = np.clip(ox + rng.integers(-1, 2, size=len(ox)), 0, W - 1)
            dest[near] = ny * W + nx
            if forced_step:
                step = np.concatenate([step, *forced_step])
                origin = np.concatenate([origin, *forced_origin])
                dest = np.concatenate([dest, *forced_dest])
            n = len(step)

            oy, ox = np.divmod(origin, W)
            dy, dx = np.divmod(dest, W)
            s_lat = bbox[0] + (oy + rng.random(n)) * dlat
            s_lon = bbox[1] + (ox + rng.random(n)) * dlon
            e_lat = bbox[0] + (dy + rng.random(n)) * dlat
            e_lon = bbox[1] + (dx + rng.random(n)) * dlon
            dist_km = np.hypot((e_lat - s_lat) * km_lat, (e_lon - s_lon) * km_lon)
            dur_s = np.rint((120.0 + 1.3 * dist_km / SPEED_KMH * 3600.0) * rng.lognormal(0.0, 0.3, size=n))
            start_ns = t0_ns + (d0 * spd + step) * (interval_s * _NS) + rng.integers(0, interval_s, size=n) * _NS
            end_t = start_ns + dur_s.astype(np.int64) * _NS
            keep = end_t < end_ns  # every record lies inside the span
            order = np.argsort(start_ns[keep], kind="stable")
            cols = [start_ns[keep][order], end_t[keep][order]] + [
                np.clip(np.round(a[keep][order], 6), lo, hi - 1e-6)  # strictly inside the box
                for a, lo, hi in (
                    (s_lat, bbox[0], bbox[2]),
                    (s_lon, bbox[1], bbox[3]),
                    (e_lat, bbox[0], bbox[2]),
                    (e_lon, bbox[1], bbox[3]),
                )
            ]
            table = pa.Table.from_arrays(
                [
                    pa.array(cols[0], pa.timestamp("ns")),
                    pa.array(cols[1], pa.timestamp("ns")),
                    *(pa.array(c, pa.float64()) for c in cols[2:]),
                ],
                schema=TRIP_SCHEMA,
            )
            writer.write_table(table, row_group_size=max(1, len(table)))
            records += len(table)

    end = start + dt.timedelta(days=days)
    return SyntheticInfo(
        records=records,
        start=start.isoformat(),
        end=end.isoformat(),
        steps=steps,
        interval_minutes=interval,
        grid=grid,
        bbox=bbox,
        channels=spec.channels,
        channel_names=channel_names,
        channel_def=channel_def,
        generator={
            "seed": cfg.seed,
            "trips_per_step": cfg.trips_per_step,
            "hotspots": cfg.hotspots,
            "burst_rate": cfg.burst_rate,
            "span_days": days,
            "like": spec.like or "bikenyc1",
        },
    )
