"""The one table of dataset constants (Table 1 of the paper, §4.1).

Every other module asks this table for grid, interval, channels, span, sources, the ×1e3 reporting flag
and the paper's cross-prompt layer count. ``get_spec`` also resolves the embedded default ``synthetic``,
the shape-faithful stand-ins ``synthetic-<name>`` and user datasets declared in ``params.yaml`` under
``local_sources``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from stvfm.errors import ConfigError


@dataclass(frozen=True)
class Source:
    """One downloadable file. ``sha256=None`` means: pin it in ``data/sources.lock.json`` on first verified download."""

    url: str
    filename: str
    sha256: str | None = None
    kind: str = "unist"  # reader to use: unist | stssl | stdn | npz | zarr | trips-citibike | trips-tlc | trips
    note: str = ""


@dataclass(frozen=True)
class PaperFacts:
    """A dataset's row of the paper's Table 1, kept as printed (for the report): what the paper *says*, which is not
    always what the published file holds (docs/data-sources.md, "What the files hold"). Table 1 lists no channel
    count, hence ``channels=None``."""

    city: str
    span: tuple[str, str]  # ISO dates, inclusive, as printed
    interval_minutes: int
    grid: tuple[int, int]  # (H, W) as printed
    channels: int | None = None

    def record(self) -> dict[str, object]:
        """The ``table1`` record of the split stage's meta.json (interval_minutes, channels, grid, span)."""
        return {
            "interval_minutes": self.interval_minutes,
            "channels": self.channels,
            "grid": list(self.grid),
            "span": list(self.span),
        }


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. ``span``, ``interval_minutes``, ``grid``, ``channels`` are what the data holds (for the ten: the
    published UniST file, checked against UniST's loader and its maintainers' answers); ``paper`` is the paper's
    Table 1 row, kept for the report. The grid stage reads interval, grid and channels from the file itself and says
    where they differ from Table 1."""

    name: str
    title: str
    domain: str
    city: str
    span: tuple[str, str]  # ISO dates, inclusive
    interval_minutes: int
    grid: tuple[int, int]  # (H, W)
    channels: int
    channel_names: tuple[str, ...]
    scale_1e3: bool = False  # the paper reports MAE/RMSE ×1e3 (Crowd, Cellular)
    prompt_layers: int = 2  # cross-prompt attention layers (§4.1: 1 for BikeNYC/TaxiNYC, else 2)
    sources: tuple[Source, ...] = ()
    kind: str = "paper"  # paper | synthetic | local
    local_path: str | None = None
    like: str | None = None  # for synthetic-<name>: the paper dataset whose shape it copies
    # Raw trip records that can be gridded instead of the pre-gridded ``sources`` (NYC bike/taxi only); selected by the
    # dataset name ``<name>-trips``. ``bbox`` = (lat_min, lon_min, lat_max, lon_max) of the grid for those records.
    trip_sources: tuple[Source, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    paper: PaperFacts | None = None  # Table 1 as printed (None: not a paper dataset)
    # the timestamp form of the published UniST file: "index" (integer step indices, Crowd/Cellular) or "pairs"
    # ((weekday, slot) per step); the reader detects it, the fixture generator writes it
    stamps: str | None = None

    @property
    def steps_per_day(self) -> int:
        return 24 * 60 // self.interval_minutes

    @property
    def num_steps(self) -> int:
        """Number of time steps covered by ``span`` (inclusive of both end days)."""
        import datetime as _dt

        a, b = (_dt.date.fromisoformat(s) for s in self.span)
        return ((b - a).days + 1) * self.steps_per_day


_IO = ("inflow", "outflow")
# UniST (Yuan et al., KDD 2024) distributes the gridded datasets as `<Name>_short.json` (the files its
# src/DataLoader.py opens as `../dataset/{dataset}_{task}.json`, task=short = 6->6) in one shared folder, mirrored on
# Tsinghua Cloud (direct `&dl=1` links below), Google Drive and Baidu Netdisk (see UniST's dataset/README.md).
# No checksums are published: the first verified download pins sha256 in data/sources.lock.json.
_UNIST = "https://cloud.tsinghua.edu.cn/d/87f5954d4f6f4ebd9d70/files/?p=%2F{name}&dl=1"
_UNIST_NOTE = (
    "UniST share; also https://drive.google.com/drive/folders/1jiTLlOgc0kzwmM12q9M6OOrBSXVD_kUU "
    "(download by hand into the mirror dir)"
)


def _unist(name: str) -> tuple[Source, ...]:
    return (Source(url=_UNIST.format(name=name), filename=name, kind="unist", note=_UNIST_NOTE),)


# Raw trip records for the NYC spans. Citi Bike: the s3 `tripdata` bucket now holds 2013-2023 as yearly archives
# (`2016-citibike-tripdata.zip`, monthly CSVs inside, e.g. `8_August/201608-citibike-tripdata_1.csv`); the old
# monthly `201608-citibike-tripdata.zip` names were folded into them. Columns include start/end station lat/lon.
_CITIBIKE = "https://s3.amazonaws.com/tripdata/{name}"
# NYC TLC yellow taxi, monthly Parquet on the TLC CloudFront host. The Parquet releases (2022) carry taxi-zone ids
# (PULocationID/DOLocationID) instead of lat/lon, so the zone shapefile comes along; the grid stage uses zone centroids.
_TLC = "https://d37ci6vzurychx.cloudfront.net/{path}"


def _citibike(year: int) -> tuple[Source, ...]:
    name = f"{year}-citibike-tripdata.zip"
    return (
        Source(
            url=_CITIBIKE.format(name=name),
            filename=name,
            kind="trips-citibike",
            note="Citi Bike system data (yearly archive of monthly CSVs)",
        ),
    )


def _tlc_yellow(*months: str) -> tuple[Source, ...]:
    files = tuple(
        Source(
            url=_TLC.format(path=f"trip-data/yellow_tripdata_{m}.parquet"),
            filename=f"yellow_tripdata_{m}.parquet",
            kind="trips-tlc",
            note="NYC TLC yellow taxi trips",
        )
        for m in months
    )
    zones = Source(
        url=_TLC.format(path="misc/taxi_zones.zip"),
        filename="taxi_zones.zip",
        kind="tlc-zones",
        note="taxi zone polygons (EPSG:2263) for PULocationID/DOLocationID",
    )
    return (*files, zones)


# Our grid boxes for the trip records (lat_min, lon_min, lat_max, lon_max); the papers do not publish theirs.
_BBOX_BIKE = (40.655, -74.020, 40.815, -73.925)  # Citi Bike 2016 service area (Manhattan, west Brooklyn, LIC)
_BBOX_TAXI = (40.600, -74.050, 40.900, -73.750)  # yellow taxi: Manhattan, Brooklyn/Queens core, LGA and JFK


# The ten datasets as UniST publishes them. Every file holds ONE channel (UniST's loader adds the channel axis with
# `unsqueeze(1)`); the interval is what the file's timestamps say, which for six of the ten is not Table 1's
# (docs/data-sources.md, "What the files hold", with the evidence): Traffic* and BikeNYC-1 are 30-minute files (their
# time-of-day runs 0..47: UniST issues #6, #19, #23, #35), BikeNYC-2 and TDrive hourly (UniST's model.py gives them its
# 24-slot time-of-day table). Facts printed wrongly in Table 1 are corrected here, the printed row stays in `paper`:
# TDrive is T-Drive *Beijing* 2015-02-01..2015-06-30 (Table 1: NYC to 2016-06-02); TaxiNYC-2's source grid is 10x20
# (Table 1: 20x10).
_FLOW = ("flow",)


def _p(city: str, span: tuple[str, str], interval: int, grid: tuple[int, int]) -> PaperFacts:
    return PaperFacts(city, span, interval, grid)


_NJ = ("2020-11-11", "2021-05-31")
DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "crowd",
            "Crowd",
            "Crowd Flow",
            "Nanjing",
            _NJ,
            30,
            (16, 20),
            1,
            _FLOW,
            scale_1e3=True,
            sources=_unist("Crowd_short.json"),
            paper=_p("Nanjing", _NJ, 30, (16, 20)),
            stamps="index",
        ),
        DatasetSpec(
            "cellular",
            "Cellular",
            "Cellular Usage",
            "Nanjing",
            _NJ,
            30,
            (16, 20),
            1,
            ("usage",),
            scale_1e3=True,
            sources=_unist("Cellular_short.json"),
            paper=_p("Nanjing", _NJ, 30, (16, 20)),
            stamps="index",
        ),
        DatasetSpec(
            "tdrive",
            "TDrive",
            "Taxi Trajectory",
            "Beijing",
            ("2015-02-01", "2015-06-30"),
            60,
            (32, 32),
            1,
            _FLOW,
            sources=_unist("TDrive_short.json"),
            paper=_p("NYC", ("2015-02-01", "2016-06-02"), 60, (32, 32)),
            stamps="pairs",
        ),
        DatasetSpec(
            "bikenyc1",
            "BikeNYC-1",
            "Bike Usage",
            "NYC",
            ("2016-08-01", "2016-09-29"),
            30,
            (16, 8),
            1,
            _FLOW,
            prompt_layers=1,
            sources=_unist("BikeNYC_short.json"),
            trip_sources=_citibike(2016),
            bbox=_BBOX_BIKE,
            paper=_p("NYC", ("2016-08-01", "2016-09-29"), 60, (16, 8)),
            stamps="pairs",
        ),
        DatasetSpec(
            "bikenyc2",
            "BikeNYC-2",
            "Bike Usage",
            "NYC",
            ("2016-07-01", "2016-08-29"),
            60,
            (10, 20),
            1,
            _FLOW,
            prompt_layers=1,
            sources=_unist("BikeNYC2_short.json"),
            trip_sources=_citibike(2016),
            bbox=_BBOX_BIKE,
            paper=_p("NYC", ("2016-07-01", "2016-08-29"), 30, (10, 20)),
            stamps="pairs",
        ),
        DatasetSpec(
            "taxinyc1",
            "TaxiNYC-1",
            "Taxi OD",
            "NYC",
            ("2016-01-01", "2016-02-29"),
            30,
            (16, 12),
            1,
            _FLOW,
            prompt_layers=1,
            sources=_unist("TaxiNYC_short.json"),
            trip_sources=_tlc_yellow("2016-01", "2016-02"),
            bbox=_BBOX_TAXI,
            paper=_p("NYC", ("2016-01-01", "2016-02-29"), 30, (16, 12)),
            stamps="pairs",
        ),
        DatasetSpec(
            "taxinyc2",
            "TaxiNYC-2",
            "Taxi OD",
            "NYC",
            ("2015-01-01", "2015-03-01"),
            30,
            (10, 20),
            1,
            _FLOW,
            prompt_layers=1,
            sources=_unist("TaxiNYC2_short.json"),
            trip_sources=_tlc_yellow("2015-01", "2015-02", "2015-03"),
            bbox=_BBOX_TAXI,
            paper=_p("NYC", ("2015-01-01", "2015-03-01"), 30, (20, 10)),
            stamps="pairs",
        ),
        DatasetSpec(
            "trafficzz",
            "TrafficZZ",
            "Traffic Speed",
            "Zhengzhou",
            ("2022-03-05", "2022-04-05"),
            30,
            (26, 26),
            1,
            ("speed",),
            sources=_unist("TrafficZZ_short.json"),
            paper=_p("Zhengzhou", ("2022-03-05", "2022-04-05"), 5, (26, 26)),
            stamps="pairs",
        ),
        DatasetSpec(
            "traffictj",
            "TrafficTJ",
            "Traffic Speed",
            "Tianjin",
            ("2022-03-05", "2022-04-05"),
            30,
            (24, 30),
            1,
            ("speed",),
            sources=_unist("TrafficTJ_short.json"),
            paper=_p("Tianjin", ("2022-03-05", "2022-04-05"), 5, (24, 30)),
            stamps="pairs",
        ),
        DatasetSpec(
            "trafficsh",
            "TrafficSH",
            "Traffic Speed",
            "Shanghai",
            ("2022-01-27", "2022-02-27"),
            30,
            (28, 32),
            1,
            ("speed",),
            sources=_unist("TrafficSH_short.json"),
            paper=_p("Shanghai", ("2022-01-27", "2022-02-27"), 5, (28, 32)),
            stamps="pairs",
        ),
    ]
}

# The embedded default: a deterministic virtual city shaped like BikeNYC-1 (16×8, hourly, in/out flow), generated as
# raw trip records by stvfm/datasets/synthetic.py. Span is kept short so `make repro` finishes in minutes on 2 cores.
SYNTHETIC = DatasetSpec(
    "synthetic",
    "Synthetic city",
    "Bike Usage (synthetic)",
    "Virtual",
    ("2024-01-01", "2024-02-29"),
    60,
    (16, 8),
    2,
    _IO,
    prompt_layers=1,
    kind="synthetic",
    like="bikenyc1",
)


def list_specs() -> list[DatasetSpec]:
    return list(DATASETS.values())


def get_spec(name: str, local_sources: Mapping[str, object] | None = None) -> DatasetSpec:
    """Resolve a dataset name: one of the ten, ``synthetic``, ``synthetic-<name>``, or a ``local_sources`` entry.

    ``local_sources`` entries are ``name -> path`` or ``name -> {path, like, interval_minutes, ...}``; the grid,
    channels and interval of a local file are read from the file itself by the reader, so the spec carries only what
    is known.
    """
    local_sources = dict(local_sources or {})
    if name in local_sources:
        entry = local_sources[name]
        entry = {"path": entry} if isinstance(entry, str) else dict(entry)  # type: ignore[arg-type]
        if "path" not in entry:
            raise ConfigError(
                f"params.yaml local_sources.{name}: needs a 'path' (an .npz, .zarr, .parquet or .csv file)"
            )
        like = entry.get("like")
        base = DATASETS.get(like) if like else None
        if like and base is None:
            raise ConfigError(
                f"params.yaml local_sources.{name}.like: unknown dataset '{like}'; known: {', '.join(DATASETS)}"
            )
        base = base or SYNTHETIC
        return replace(
            base,
            name=name,
            title=entry.get("title", name),
            kind="local",
            local_path=str(entry["path"]),
            sources=(),
            like=like,
            prompt_layers=int(entry.get("prompt_layers", base.prompt_layers)),
            scale_1e3=bool(entry.get("scale_1e3", base.scale_1e3 if like else False)),
        )
    if name == "synthetic":
        return SYNTHETIC
    if name.startswith("synthetic-"):
        like = name[len("synthetic-") :]
        if like not in DATASETS:
            raise ConfigError(f"unknown dataset '{name}': 'synthetic-<name>' needs one of {', '.join(DATASETS)}")
        b = DATASETS[like]
        return replace(b, name=name, title=f"Synthetic {b.title}", kind="synthetic", sources=(), like=like)
    if name in DATASETS:
        return DATASETS[name]
    if name.endswith("-trips") and name[: -len("-trips")] in DATASETS:  # the raw trip records of an NYC dataset
        b = DATASETS[name[: -len("-trips")]]
        if not b.trip_sources:
            with_trips = ", ".join(f"{n}-trips" for n, s in DATASETS.items() if s.trip_sources)
            raise ConfigError(
                f"unknown dataset '{name}': '{b.name}' has no raw trip records; ones that do: {with_trips}"
            )
        # gridded trip records give two channels (inflow, outflow) at the dataset's interval
        return replace(
            b,
            name=name,
            title=f"{b.title} (trip records)",
            sources=b.trip_sources,
            like=b.name,
            channels=2,
            channel_names=_IO,
            stamps=None,
        )
    trips = "|".join(n for n, s in DATASETS.items() if s.trip_sources)
    known = ", ".join([*DATASETS, "synthetic", "synthetic-<name>", f"<{trips}>-trips", *local_sources])
    raise ConfigError(f"unknown dataset '{name}'. Known: {known}. Add your own under local_sources: in params.yaml.")


def checksum_status(spec: DatasetSpec, pins: Mapping[str, object] | None = None) -> str:
    """How the files of ``spec`` are verified: ``published`` (sha256 in this table), ``pinned`` (every file in
    data/sources.lock.json), ``TOFU`` (trust on first use: upstream publishes no checksum and nothing is pinned yet:
    the first download is trusted and pinned), ``generated`` (synthetic)."""
    if spec.kind == "synthetic":
        return "generated"
    if not spec.sources:
        return "-"
    if all(src.sha256 for src in spec.sources):
        return "published"
    pins = pins or {}
    if all(src.sha256 or src.url in pins for src in spec.sources):
        return "pinned"
    return "TOFU"


def table1_differences(spec: DatasetSpec) -> list[str]:
    """Where this table (what the published file holds) differs from the paper's Table 1 row, one phrase each."""
    p = spec.paper
    if p is None:
        return []
    out = []
    if p.interval_minutes != spec.interval_minutes:
        out.append(f"interval: file {spec.interval_minutes} min, Table 1 {p.interval_minutes} min")
    if tuple(p.grid) != tuple(spec.grid):
        out.append(f"grid: file {spec.grid[0]}x{spec.grid[1]}, Table 1 {p.grid[0]}x{p.grid[1]}")
    if tuple(p.span) != tuple(spec.span):
        out.append(f"span: file {spec.span[0]}..{spec.span[1]}, Table 1 {p.span[0]}..{p.span[1]}")
    if p.city != spec.city:
        out.append(f"city: {spec.city}, Table 1 {p.city}")
    return out


def as_rows(pins: Mapping[str, object] | None = None) -> list[dict[str, object]]:
    """The table as plain rows (for `stvfm datasets` and the report); ``pins``: data/sources.lock.json's files.
    ``table1`` lists where the paper's Table 1 differs from what the file holds (``paper``: the printed row)."""
    rows = []
    for s in [*DATASETS.values(), SYNTHETIC]:
        rows.append(
            dict(
                name=s.name,
                title=s.title,
                domain=s.domain,
                city=s.city,
                span=f"{s.span[0]}..{s.span[1]}",
                interval=f"{s.interval_minutes} min",
                grid=f"{s.grid[0]}x{s.grid[1]}",
                channels=s.channels,
                x1e3=s.scale_1e3,
                prompt_layers=s.prompt_layers,
                checksum=checksum_status(s, pins),
                table1="; ".join(table1_differences(s)) or "-",
                paper=s.paper.record() | {"city": s.paper.city} if s.paper else None,
                sources=" ".join(src.url for src in s.sources) or ("generated" if s.kind == "synthetic" else ""),
            )
        )
    return rows
