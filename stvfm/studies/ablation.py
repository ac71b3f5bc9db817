"""The real-data ablation: each paper variant and each beyond-the-paper switch trained with the same profile.

``ABLATION`` lists (name, overrides on top of the chosen profile). Every run is selected on validation and read on
test once (:func:`stvfm.studies.quality.fit_and_score`); results go to ``metrics/<ds>/ablation/<name>.json`` and the
table to ``reports/ablation-<ds>.md`` (its own file: the dataset reports are not touched).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stvfm.config import Params, with_overrides
from stvfm.io import atomic_path, read_json, write_json
from stvfm.paths import dataset_paths
from stvfm.studies.quality import fit_and_score, reference_scores, scores_line

log = logging.getLogger(__name__)

ABLATION: list[tuple[str, dict[str, Any]]] = [
    ("simple", {"model.variant": "simple"}),  # Table 3 #1
    ("token", {"model.variant": "token"}),  # #2
    ("temporal", {"model.variant": "temporal"}),  # #3
    ("adapter", {"model.variant": "adapter"}),  # #4
    ("full", {"model.variant": "full"}),  # Ours (full), with the profile's time identity / output path
    ("full-no-clock", {"model.variant": "full", "model.time_identity": False}),
    ("full-plain-output", {"model.variant": "full", "model.output": "plain"}),
    ("full-paper-head", {"model.variant": "full", "model.time_identity": False, "model.output": "plain"}),
    # the identity path alone: STID's network (model.stid), no VFM, trained by this very recipe — what the VFM adds
    ("identity-only", {"model.arch": "stid", "model.bf16": False}),  # fp32, as the path inside ST-VFM
]


def result_path(root: Path, dataset: str, name: str, data_root: str = "data") -> Path:
    return dataset_paths(dataset, root, data_root).metrics_dir / "ablation" / f"{name}.json"


def run_ablation(
    dataset: str, params: Params, root: str | Path = ".", names: list[str] | None = None, threads: int | None = 1
) -> dict[str, Any]:
    root = Path(root)
    rows = []
    for name, ov in ABLATION:
        if names and name not in names:
            continue
        p = with_overrides(params, ov)
        r = fit_and_score(p, dataset, root, test=True, threads=threads)
        model = {k: getattr(p.model, k) for k in ("variant", "time_identity", "output", "vfm_blocks")}
        if p.model.arch == "stid":
            model.update(
                variant="– (STID network, no VFM)",
                time_identity=p.model.stid.time_identity,
                output="identity only",
                vfm_blocks=0,
            )
        r.update(name=name, overrides=ov, profile=params.profile, model=model)
        write_json(result_path(root, dataset, name, params.data.root), r)
        log.info("%s", scores_line("ablation", dataset, name, r))
        rows.append(r)
    refs = {s: reference_scores(params, dataset, root, s) for s in ("val", "test")}
    out = dataset_paths(dataset, root, params.data.root).report_dir / f"ablation-{dataset}.md"
    every = [read_json(q) for n, _ in ABLATION if (q := result_path(root, dataset, n, params.data.root)).is_file()]
    with atomic_path(out) as tmp:
        tmp.write_text(render_ablation(dataset, every, refs))
    return {"report": str(out), "runs": len(rows)}


def render_ablation(dataset: str, rows: list[dict[str, Any]], refs: dict[str, dict[str, dict]]) -> str:
    def f(d):
        return f"{d['mae']:.3f} / {d['rmse']:.3f}" if d else "–"

    L = [
        f"# Ablation on real data: {dataset}",
        "",
        "Each row: the same training profile, best-validation checkpoint, test read once. MAE / RMSE on the original "
        "scale. `clock` = model.time_identity, `output` = model.output (beyond the paper).",
        "",
        "| run | variant | clock | output | val MAE / RMSE | test MAE / RMSE | best epoch / run | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["model"]
        L.append(
            f"| {r['name']} | {m['variant']} | {'on' if m['time_identity'] else 'off'} | {m['output']} | "
            f"{f(r['val'])} | {f(r['test'])} | {r['best_epoch']} / {r['epochs_run']} | {r['fit_s']:.0f} |"
        )
    for k in ("persistence", "ha"):
        L.append(f"| {k} (reference) | – | – | – | {f(refs['val'][k])} | {f(refs['test'][k])} | – | – |")
    L += ["", f"Profile: `{rows[0]['profile']}`." if rows else "", ""]
    return "\n".join(L)
