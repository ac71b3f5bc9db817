"""``stvfm compare``: one row per experiment × dataset with test MAE / RMSE of ST-VFM and every baseline.

Reads ``dvc exp show --json`` (the workspace, the Git baseline and its DVC experiments) and keeps only the DVC metrics
this project declares — ``metrics/<ds>/stvfm.json`` (evaluate) and ``metrics/<ds>/baselines/<method>.json``
(baselines) — so the comparison fits a terminal, unlike ``dvc exp show``'s one column per param and metric.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stvfm.config import AUTO, auto_profile
from stvfm.errors import ConfigError

STVFM_RE = re.compile(r"(?:^|/)metrics/(?P<ds>[^/]+)/stvfm\.json$")
BASELINE_RE = re.compile(r"(?:^|/)metrics/(?P<ds>[^/]+)/baselines/(?P<m>[^/]+)\.json$")
ORDER = ["ST-VFM", "STID", "HA", "ARIMA", "Persistence"]
LABEL = {"stid": "STID", "ha": "HA", "arima": "ARIMA", "persistence": "Persistence"}


def exp_show_json(root: str | Path = ".", extra: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``dvc exp show --json`` of the project at ``root`` (DVC's own serialisation)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json", *extra]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        msg = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"`dvc exp show --json` failed in {Path(root).resolve().name}: {msg}")
    return json.loads(out.stdout or "[]")


def _entries(doc: list[dict[str, Any]]) -> Iterable[tuple[str, dict[str, Any]]]:
    for top in doc:
        rev = top.get("rev", "?")
        name = top.get("name") or (rev if rev == "workspace" else rev[:7])
        if top.get("data"):
            yield name, top["data"]
        for exp in top.get("experiments") or []:
            for r in exp.get("revs") or []:
                if r.get("data"):
                    yield r.get("name") or r.get("rev", "?")[:7], r["data"]


def rows(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{experiment, profile, dataset, scores: {method: {mae, rmse, ...}}}]`` from ``dvc exp show --json``."""
    out = []
    for name, data in _entries(doc):
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        per_ds: dict[str, dict[str, dict]] = {}
        for path, m in (data.get("metrics") or {}).items():
            vals = (m or {}).get("data") or {}
            if hit := STVFM_RE.search(path):
                per_ds.setdefault(hit["ds"], {})["ST-VFM"] = vals
            elif hit := BASELINE_RE.search(path):
                per_ds.setdefault(hit["ds"], {})[LABEL.get(hit["m"], hit["m"])] = vals
        for ds in sorted(per_ds):
            out.append({"experiment": name, "profile": _profile(params, ds), "dataset": ds, "scores": per_ds[ds]})
    return out


def _profile(params: dict[str, Any], dataset: str) -> str:
    """The profile ``dataset`` ran with: ``profile: auto`` resolves per dataset (``real (auto)`` for real data)."""
    name = params.get("profile", "default")
    if name == AUTO and AUTO not in (params.get("profiles") or {}):
        return f"{auto_profile(dataset, params)[0]} (auto)"
    return str(name)


def _cell(v: dict | None) -> str:
    if not v or not isinstance(v.get("mae"), (int, float)):
        return "–"
    s = f"{v['mae']:.3f} / {v['rmse']:.3f}" if isinstance(v.get("rmse"), (int, float)) else f"{v['mae']:.3f}"
    if isinstance(v.get("mae_std"), (int, float)):
        s += f" ±{v['mae_std']:.2f}"
    return s


def render(items: list[dict[str, Any]]) -> str:
    """A plain table; each method cell is ``MAE / RMSE`` (test split, original scale), ``*`` = lowest MAE in the row."""
    if not items:
        return "no results yet: run `dvc repro` (or `dvc exp run`) first"
    methods = [m for m in ORDER if any(m in r["scores"] for r in items)]
    methods += sorted({m for r in items for m in r["scores"]} - set(methods))
    head = ["experiment", "profile", "dataset", *methods]
    table = []
    for r in items:
        best = min(
            (m for m in methods if isinstance((r["scores"].get(m) or {}).get("mae"), (int, float))),
            key=lambda m: r["scores"][m]["mae"],
            default=None,
        )
        table.append(
            [
                r["experiment"],
                r["profile"],
                r["dataset"],
                *(_cell(r["scores"].get(m)) + ("*" if m == best else "") for m in methods),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("cells: test MAE / RMSE (original scale); * = lowest MAE of the row")
    return "\n".join(lines)
