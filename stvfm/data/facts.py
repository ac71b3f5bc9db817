"""What the data holds beside what the paper's Table 1 says: the file decides, the table informs.

The grid stage computes these from the canonical series and records them in the grid store's attrs and its stats; the
split stage copies them into ``meta.json`` (the report and the MLflow params read them there):

``file_facts``     {"interval_minutes", "channels", "grid", "span"}: what the data itself holds (span: the dates of its
                   first and last step).
``table1``         the same keys as the paper's Table 1 row for the dataset (or for the dataset it is ``like``), None if
                   there is none; ``channels`` is None: Table 1 lists no channel count.
``disagreements``  one phrase per key where both have a value and they differ, e.g.
                   ``"interval: file 30 min, Table 1 60 min"``.
``source``         {"kind": "paper-file" | "trips" | "local" | "synthetic", "reader": <reader kind>, "files": [names]}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stvfm.datasets.registry import DATASETS, DatasetSpec

SOURCE_KINDS = {"paper": "paper-file", "trips": "trips", "local": "local", "synthetic": "synthetic"}


def file_facts(ds) -> dict[str, Any]:
    """interval, channels, grid and span of a canonical Dataset (var ``flow`` (time, y, x, channel))."""
    _, H, W, C = ds["flow"].shape
    times = ds["time"].values
    return {
        "interval_minutes": int(ds.attrs["interval_minutes"]),
        "channels": int(C),
        "grid": [int(H), int(W)],
        "span": [str(np.datetime_as_string(times[0], unit="D")), str(np.datetime_as_string(times[-1], unit="D"))],
    }


def table1(spec: DatasetSpec) -> dict[str, Any] | None:
    """The paper's Table 1 row of ``spec`` (or of the paper dataset it is ``like``), as a ``table1`` record."""
    paper = spec.paper or (DATASETS[spec.like].paper if spec.like in DATASETS else None)
    return paper.record() if paper is not None else None


def disagreements(facts: Mapping[str, Any], table: Mapping[str, Any] | None) -> list[str]:
    """One phrase per key where the data and Table 1 differ (keys Table 1 leaves empty are not compared)."""
    if not table:
        return []
    out = []
    if table.get("interval_minutes") is not None and facts["interval_minutes"] != table["interval_minutes"]:
        out.append(f"interval: file {facts['interval_minutes']} min, Table 1 {table['interval_minutes']} min")
    if table.get("channels") is not None and facts["channels"] != table["channels"]:
        out.append(f"channels: file {facts['channels']}, Table 1 {table['channels']}")
    if table.get("grid") is not None and list(facts["grid"]) != list(table["grid"]):
        out.append(f"grid: file {_grid(facts['grid'])}, Table 1 {_grid(table['grid'])}")
    if table.get("span") is not None and list(facts["span"]) != list(table["span"]):
        out.append(f"span: file {facts['span'][0]}..{facts['span'][1]}, Table 1 {table['span'][0]}..{table['span'][1]}")
    return out


def _grid(g: Sequence[int]) -> str:
    return f"{int(g[0])}x{int(g[1])}"


def source_record(source_kind: str | None, reader: str, files: Sequence[str]) -> dict[str, Any]:
    """The ``source`` record from the manifest's ``source_kind`` (paper | trips | local | synthetic) and reader."""
    return {
        "kind": SOURCE_KINDS.get(str(source_kind), source_kind or "unknown"),
        "reader": reader,
        "files": list(files),
    }


def summary_line(name: str, dis: Sequence[str]) -> str:
    """The grid stage's one line where the data and Table 1 disagree."""
    return f"{name}: the data and the paper's Table 1 disagree (the data is used): " + "; ".join(dis)


def mlflow_params(meta: Mapping[str, Any]) -> dict[str, str]:
    """The data's protocol, source, facts and Table 1 row as MLflow params (what the train stage logs from
    meta.json)."""

    def fmt(k: str, v: Any) -> str:
        if v is None:
            return "-"
        if k == "grid":
            return _grid(v)
        if k == "span":
            return f"{v[0]}..{v[1]}"
        return str(v)

    src = meta.get("source") or {}
    out = {
        "data.protocol": str(meta.get("protocol", "ratio")),
        "data.source.kind": str(src.get("kind", "-")),
        "data.source.reader": str(src.get("reader", "-")),
        "data.disagreements": "; ".join(meta.get("disagreements") or []) or "none",
    }
    for rec, prefix in ((meta.get("file_facts") or {}, "data.file"), (meta.get("table1") or {}, "data.table1")):
        for k in ("interval_minutes", "channels", "grid", "span"):
            out[f"{prefix}.{k}"] = fmt(k, rec.get(k))
    return out
