"""`stvfm fixtures <dir>`: write small files in UniST's published layout (one `<Name>_short.json` per paper
dataset) into a folder, to use as the download mirror (`data.mirror_dir`): what `make smoke` and the tests run end to
end."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("fixtures", help="write small UniST-layout files of the ten datasets (a download mirror)")
    p.add_argument("out", help="folder to write into (created)")
    p.add_argument("--datasets", nargs="*", default=None, help="paper datasets (default: the ten)")
    p.add_argument("--windows", type=int, default=80, help="12-step windows per file, all splits (default 80)")
    p.add_argument("--periods", type=int, default=3, help="days of X_period context per step (default 3, as UniST)")
    p.add_argument(
        "--cut",
        choices=["windows", "series"],
        default="windows",
        help="windows: the window list cut 70/15/15 (splits overlap); series: the series cut first",
    )
    p.add_argument(
        "--archive",
        metavar="NAME.zip",
        default=None,
        help="also pack the files into one zip (members under dataset/), as UniST publishes the folder",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from stvfm.datasets.unist_fixtures import write_fixtures

    for p in write_fixtures(
        args.out,
        args.datasets,
        archive=args.archive,
        windows=args.windows,
        periods=args.periods,
        cut=args.cut,
        seed=args.seed,
    ):
        print(p)
    return 0
