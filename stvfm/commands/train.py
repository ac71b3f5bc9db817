"""`stvfm train <dataset>`: the train stage from the command line (Ray Train, or in-process with --no-ray)."""

from __future__ import annotations

import json

from stvfm.commands._args import add_params_args


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train ST-VFM on a dataset's split outputs (Ray Train data-parallel), log to MLflow"
    )
    p.add_argument("dataset")
    add_params_args(p)
    p.add_argument("--no-ray", action="store_true", help="run the plain loop in this process (train.use_ray=false)")
    p.add_argument("--resume", default=None, help="resume the plain loop from a last.pt checkpoint")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.config import load_params
    from stvfm.studies.verdict import validation_verdict
    from stvfm.training.stage import run_train, train_summary

    overrides = list(args.overrides) + (["train.use_ray=false"] if args.no_ray or args.resume else [])
    params = load_params(args.params, overrides, dataset=args.dataset)
    out = run_train(
        params, args.dataset, args.root, resume=args.resume, track=not args.no_track, verdict=validation_verdict
    )
    print(json.dumps(train_summary(out), default=str, indent=2))
    print(out["verdict"]["line"])  # the last line: does the model beat HA and persistence on validation?
    return 0
