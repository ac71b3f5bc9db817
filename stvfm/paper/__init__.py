"""The paper's result tables as data (CSV files in this package; see README.md for the source and transcription notes).

Loaded through :mod:`importlib.resources`, so they work from an installed wheel too.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Any

from stvfm.errors import ConfigError

TABLES = {
    "table2_main": "main Table 2 (18 methods x 10 datasets)",
    "table3_ablation": "main Table 3 (ablation: variants simple..full)",
    "appendix_table2_videomae": "appendix Table 2 (VideoMAE vs image VFMs; full main Table 4)",
    "appendix_table3_backbones": "appendix Table 3 (backbones DINO/CLIP/DEIT vs UniST)",
}
PAPER_DATASETS = (
    "crowd",
    "cellular",
    "tdrive",
    "bikenyc1",
    "bikenyc2",
    "taxinyc1",
    "taxinyc2",
    "trafficzz",
    "traffictj",
    "trafficsh",
)


def _num(v: str) -> float:
    return float(v) if v.strip() else float("nan")


def read_rows(table: str) -> list[dict[str, Any]]:
    """Rows of one table as dicts; ``rmse``/``mae`` as float (NaN where the paper has N/A)."""
    if table not in TABLES:
        raise ConfigError(f"unknown paper table '{table}'; known: {', '.join(TABLES)}")
    text = resources.files(__package__).joinpath(f"{table}.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    for r in rows:
        r["rmse"], r["mae"] = _num(r["rmse"]), _num(r["mae"])
    return rows


def load_table(table: str):
    """One table as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(read_rows(table))


def lookup(table: str, dataset: str, **match: str) -> dict[str, float] | None:
    """``{"rmse", "mae"}`` of the first row of ``table`` for ``dataset`` whose columns equal ``match``; None if
    absent."""
    for r in read_rows(table):
        if r["dataset"] == dataset and all(r.get(k) == v for k, v in match.items()):
            return {"rmse": r["rmse"], "mae": r["mae"]}
    return None
