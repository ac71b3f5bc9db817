"""Forecast quality on the real NYC samples: per sample, ST-VFM ÷ best baseline (persistence, HA, ARIMA, STID) on test
RMSE and MAE, and the wall time of each method. Below 1 = ST-VFM wins.

    make real                                  # the three samples through the DAG with profile=real
    python benchmarks/bench_quality.py [--datasets bikenyc1_tail bikenyc2_test taxinyc2_test] [--root .]

Reads the DAG's outputs (metrics/<ds>/test.json, baselines.json, baselines_detail.json, models/<ds>/train.json);
trains nothing. Last stdout line: one JSON object, ``ratio`` = the worst (largest) of all the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ("bikenyc1_tail", "bikenyc2_test", "taxinyc2_test")
BASELINES = ("persistence", "ha", "arima", "stid")


def sample_row(root: Path, ds: str, data_root: str = "data") -> dict:
    from stvfm.errors import DataError
    from stvfm.io import read_json
    from stvfm.paths import dataset_paths

    p = dataset_paths(ds, root, data_root)
    files = {
        "test": p.metrics_dir / "test.json",
        "baselines": p.metrics_dir / "baselines.json",
        "detail": p.metrics_dir / "baselines_detail.json",
        "train": p.model_dir / "train.json",
    }
    for key, f in files.items():
        if key != "train" and not f.is_file():  # train.json (wall time) is a local DVC output: optional
            raise DataError("missing DAG output; run `make real` first", dataset=ds, path=str(f))
    test, base = read_json(files["test"]), read_json(files["baselines"])
    detail = read_json(files["detail"]).get("baselines", {})
    train = read_json(files["train"]) if files["train"].is_file() else {}
    methods = [m for m in BASELINES if m in base]
    if not methods:
        raise DataError("baselines.json has none of " + ", ".join(BASELINES), dataset=ds, path=str(files["baselines"]))
    row = {"dataset": ds, "stvfm": {"mae": test["mae"], "rmse": test["rmse"], "seconds": train.get("wall_s")}}
    for m in methods:
        row[m] = {"mae": base[m]["mae"], "rmse": base[m]["rmse"], "seconds": detail.get(m, {}).get("seconds")}
    for k in ("mae", "rmse"):
        best = min(methods, key=lambda m: base[m][k])
        row[f"best_{k}"] = best
        row[f"ratio_{k}"] = test[k] / base[best][k]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(SAMPLES))
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--data-root", default="data")
    a = ap.parse_args(argv)
    from stvfm.errors import StvfmError

    try:
        rows = [sample_row(Path(a.root), ds, a.data_root) for ds in a.datasets]
    except StvfmError as e:
        print(f"bench_quality: error: {e}", file=sys.stderr)
        return 2

    def t(s):
        return "–" if s is None else f"{s:.0f}"

    print(f"{'sample':<15} {'method':<12} {'RMSE':>8} {'MAE':>8} {'wall s':>7}")
    for r in rows:
        for m in ("stvfm", *BASELINES):
            if m in r:
                print(f"{r['dataset']:<15} {m:<12} {r[m]['rmse']:8.3f} {r[m]['mae']:8.3f} {t(r[m]['seconds']):>7}")
        print(
            f"{r['dataset']:<15} {'ratio':<12} {r['ratio_rmse']:8.3f} {r['ratio_mae']:8.3f}   "
            f"(vs best: RMSE {r['best_rmse']}, MAE {r['best_mae']})"
        )
    worst = max(max(r["ratio_rmse"], r["ratio_mae"]) for r in rows)
    print(
        json.dumps(
            {
                "ratio": round(worst, 4),
                "per_sample": {
                    r["dataset"]: {
                        "ratio_rmse": round(r["ratio_rmse"], 4),
                        "ratio_mae": round(r["ratio_mae"], 4),
                        "stvfm_s": r["stvfm"]["seconds"],
                    }
                    for r in rows
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
