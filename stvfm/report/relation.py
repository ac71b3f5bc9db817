"""How the data of a run relates to the paper's: the one place that decides whether the report may compare with a
paper row.

A paper row (Table 2, Table 3, appendix Table 3) is compared — side by side, with a relative gap — only when the run's
data **is the paper's file** (UniST's ``<Name>_short.json`` of that dataset) **under the paper's protocol** (UniST's own
train/val/test windows: the paper evaluates "following the evaluation protocol of UniST"). Everything else — the same
file under our ratio split, trip records gridded here, a local file with ``like:`` (e.g. the real NYC samples: other
preprocessing, two channels, 20 days), the synthetic city — gets no gap: the report states what differs (source,
interval, channels, grid, span, split) and lists the paper's numbers for reference only.

What the run's data is comes from the split stage's ``meta.json`` (``source``, ``protocol``, ``table1``,
``disagreements``; read with defaults, derived from the dataset table where absent). The paper's data is described
twice: what its published file holds (the dataset table, :mod:`stvfm.datasets.registry`) and what its Table 1 says
(``meta['table1']`` or the table's ``paper`` row); "same" compares ours with the file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stvfm.datasets.registry import DATASETS

PAPER_PROTOCOL = "published"  # UniST's pre-split windows: how the paper's numbers were obtained
LEVELS = {  # level -> what the summary's "relation" column says
    "comparable": "the paper's file and split",
    "paper-file": "the paper's file, another split — no gap",
    "trips": "trip records gridded here — no gap",
    "local": "other data (local file) — no gap",
    "synthetic": "SYNTHETIC — not comparable",
    "none": "no paper counterpart",
}
FACETS = ("source", "interval", "channels", "grid", "span", "split")


@dataclass(frozen=True)
class Relation:
    level: str  # a key of LEVELS
    paper_dataset: str | None  # the paper dataset whose rows are shown (compared or for reference)
    sentence: str  # one paragraph for the report
    differs: list[dict[str, Any]] = field(default_factory=list)  # {facet, ours, paper, same}
    disagreements: list[str] = field(default_factory=list)  # the file vs Table 1 (from the grid stage)

    @property
    def comparable(self) -> bool:
        return self.level == "comparable"

    @property
    def label(self) -> str:
        return LEVELS[self.level]


def source_kind(spec, meta: Mapping[str, Any]) -> str:
    """paper-file | trips | local | synthetic: from ``meta['source']['kind']``, else from the dataset table."""
    kind = (meta.get("source") or {}).get("kind") if isinstance(meta.get("source"), Mapping) else None
    if kind:
        return str(kind)
    if spec.kind == "synthetic":
        return "synthetic"
    if spec.kind == "local":
        return "local"
    return "trips" if spec.name.endswith("-trips") else "paper-file"


def protocol(meta: Mapping[str, Any]) -> str:
    """``published`` (the file's own windows) or ``ratio`` (our chronological split of the series)."""
    return str(meta.get("protocol") or "ratio")


def _split_text(meta: Mapping[str, Any]) -> str:
    if protocol(meta) == "published":
        return "UniST's published train/val/test windows"
    frac = meta.get("split")
    if isinstance(frac, (list, tuple)) and len(frac) == 3:
        return "ratio " + "/".join(f"{round(100 * float(f))}" for f in frac) + " of the series"
    return f"{protocol(meta)} split"


def _days(a: str, b: str) -> int:
    return (dt.date.fromisoformat(b[:10]) - dt.date.fromisoformat(a[:10])).days + 1


def table1(paper_ds: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the paper says of its dataset (Table 1): interval, channels (None: Table 1 lists none), grid, span."""
    t = meta.get("table1")
    if isinstance(t, Mapping) and t:
        return dict(t)
    p = DATASETS[paper_ds].paper
    return p.record() if p is not None else {}


def _source_text(kind: str, spec, meta: Mapping[str, Any]) -> str:
    src = meta.get("source") if isinstance(meta.get("source"), Mapping) else {}
    files = ", ".join(str(f) for f in (src.get("files") or [])[:3])
    if kind == "paper-file":
        return f"the paper's file ({files or ', '.join(s.filename for s in spec.sources) or spec.name})"
    if kind == "trips":
        return f"raw trip records gridded by this project ({files or ', '.join(s.filename for s in spec.sources)})"
    if kind == "local":
        return f"a local file ({files or spec.local_path}), another preprocessing"
    if kind == "synthetic":
        return "a generated city"
    return kind


def _v(v: Any, fmt: str = "{}") -> str:
    return "–" if v is None else fmt.format(v)


def facets(spec, meta: Mapping[str, Any], span: Mapping[str, Any], paper_ds: str, kind: str) -> list[dict[str, Any]]:
    """Ours against the paper's data, facet by facet (source, interval, channels, grid, span, split): ``file`` is what
    the paper's published file holds (the dataset table), ``table1`` what the paper's Table 1 says; ``same`` compares
    ours with the file (the data the paper's numbers come from)."""
    t1 = table1(paper_ds, meta)
    f = DATASETS[paper_ds]
    grid = lambda g: "×".join(map(str, g)) if g else "–"  # noqa: E731
    t1_span = t1.get("span")
    ours_grid = list(meta.get("grid") or [])
    rows = [
        (
            "source",
            _source_text(kind, spec, meta),
            f"UniST's {', '.join(s.filename for s in f.sources)}",
            "–",
            kind == "paper-file",
        ),
        (
            "interval",
            f"{span['interval_minutes']} min",
            f"{f.interval_minutes} min",
            _v(t1.get("interval_minutes"), "{} min"),
            int(span["interval_minutes"]) == f.interval_minutes,
        ),
        (
            "channels",
            _v(meta.get("channels")),
            str(f.channels),
            _v(t1.get("channels")),
            meta.get("channels") is not None and int(meta["channels"]) == f.channels,
        ),
        ("grid", grid(ours_grid), grid(f.grid), grid(t1.get("grid")), ours_grid == list(f.grid)),
        (
            "span",
            f"{span['start'][:10]}..{span['end'][:10]} ({span['days']} days)",
            f"{f.span[0]}..{f.span[1]} ({_days(*f.span)} days)",
            f"{t1_span[0]}..{t1_span[1]}" if t1_span else "–",
            span["start"][:10] == f.span[0] and span["end"][:10] == f.span[1],
        ),
        (
            "split",
            _split_text(meta),
            "UniST's published train/val/test windows",
            "70/15/15 (§4.1), UniST's protocol",
            protocol(meta) == PAPER_PROTOCOL,
        ),
    ]
    if kind == "paper-file":  # the data is the paper's file itself: its interval/channels/grid/span are the file's
        rows = [
            (k, o, fi, t, True if k in ("interval", "channels", "grid", "span") else same) for k, o, fi, t, same in rows
        ]
    return [{"facet": k, "ours": o, "file": fi, "table1": t, "same": bool(same)} for k, o, fi, t, same in rows]


def relation(spec, span: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> Relation:
    """How the run's data relates to the paper's (see the module doc)."""
    meta = dict(meta or {})
    kind = source_kind(spec, meta)
    dis = [str(x) for x in meta.get("disagreements") or []]
    paper_ds = spec.like if kind != "paper-file" else spec.name
    if kind == "paper-file" and spec.name not in DATASETS:  # e.g. a local_sources entry that names a paper file
        paper_ds = spec.like
    if not paper_ds or paper_ds not in DATASETS:
        return Relation(
            "none",
            None,
            "a local dataset with no paper counterpart (set `like:` in local_sources to "
            "name one); no paper numbers are shown.",
            [],
            dis,
        )
    title = DATASETS[paper_ds].title
    rows = facets(spec, meta, span, paper_ds, kind)
    differ = [r for r in rows if not r["same"]]
    if kind == "paper-file" and not differ:
        note = f" The file disagrees with Table 1: {'; '.join(dis)}." if dis else ""
        return Relation(
            "comparable",
            paper_ds,
            f"the paper's {title} file under the paper's protocol (UniST's "
            f"published split): the gaps to the paper's rows are meaningful.{note}",
            rows,
            dis,
        )
    what = ", ".join(r["facet"] for r in differ)
    if kind == "synthetic":
        s = (
            f"SYNTHETIC data (a generated city shaped like {title}); the paper's numbers are listed for reference "
            f"only and are NOT comparable (differs: {what})."
        )
    elif kind == "paper-file":
        s = (
            f"the paper's {title} file, but not under the paper's protocol (ours: {_split_text(meta)}; the paper: "
            "UniST's published windows, `data.split: published`); the paper's numbers are listed for reference, "
            "no gap is computed."
        )
    else:
        origin = "raw trip records gridded by this project" if kind == "trips" else "a local file"
        s = (
            f"NOT the paper's data: {origin}, in the layout of {title} (differs: {what}); the paper's numbers are "
            "listed for reference, no gap is computed."
        )
    return Relation(kind, paper_ds, s, rows, dis)
