"""`stvfm train <dataset>`: the train stage from the command line (Ray Train, or in-process with --no-ray)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train ST-VFM on a dataset's split outputs (Ray Train data-parallel), log to MLflow"
    )
    p.add_argument("dataset")
    p.add_argument("--params", default=None, help="params file (default: params.yaml or $STVFM_PARAMS)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter, e.g. --set train.epochs=2 (repeatable)",
    )
    p.add_argument("--no-ray", action="store_true", help="run the plain loop in this process (train.use_ray=false)")
    p.add_argument("--resume", default=None, help="resume the plain loop from a last.pt checkpoint")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--root", default=".", help="project root (default: .)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.config import load_params
    from stvfm.studies.verdict import validation_verdict
    from stvfm.training.stage import run_train

    overrides = list(args.overrides) + (["train.use_ray=false"] if args.no_ray or args.resume else [])
    params = load_params(args.params, overrides, dataset=args.dataset)
    out = run_train(
        params, args.dataset, args.root, resume=args.resume, track=not args.no_track, verdict=validation_verdict
    )
    print(
        json.dumps(
            {
                k: out.get(k)
                for k in (
                    "dataset",
                    "profile",
                    "profile_reason",
                    "engine",
                    "epochs_run",
                    "best_epoch",
                    "val",
                    "fit_s",
                    "wall_s",
                    "resumed_from",
                    "model",
                )
            },
            default=str,
            indent=2,
        )
    )
    print(out["verdict"]["line"])  # the last line: does the model beat HA and persistence on validation?
    return 0
