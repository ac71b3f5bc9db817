"""Every `stvfm` command that reads params takes the same options, worded once (stvfm/commands/_args.py):
``--params FILE``, ``--set KEY=VALUE`` (repeatable, into ``args.overrides``), and the pipelines' stage entry points
too."""

from __future__ import annotations

import argparse

import pytest

from stvfm.cli import build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _option(p: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in p._actions if flag in a.option_strings), None)


PARAMS_COMMANDS = ["data", "model_info", "train", "evaluate", "serve", "forecast", "baselines", "report"]


def test_the_params_commands_are_all_there():
    subs = _subparsers()
    with_set = sorted(name.replace("-", "_") for name, p in subs.items() if _option(p, "--set"))
    assert with_set == sorted(PARAMS_COMMANDS)


@pytest.mark.parametrize("name", PARAMS_COMMANDS)
def test_set_is_repeatable_into_overrides_beside_params(name):
    p = _subparsers()[name.replace("_", "-")]
    opt = _option(p, "--set")
    assert opt is not None and opt.dest == "overrides" and isinstance(opt, argparse._AppendAction)
    assert _option(p, "--params") is not None
    positionals = [a for a in p._actions if not a.option_strings and a.nargs != 0]
    args = ["x"] * sum(1 for a in positionals if a.nargs is None)
    if name == "data":
        args = ["grid", "synthetic"]
    if name == "serve":
        args = ["--model", "m"]
    ns = p.parse_args([*args, "--set", "train.epochs=2", "--set", "model.lambda_flow=0.5"])
    assert ns.overrides == ["train.epochs=2", "model.lambda_flow=0.5"]


def test_the_stage_entry_points_read_set_the_same_way(tmp_path, capsys):
    from pipelines._stage import stage_main

    (tmp_path / "params.yaml").write_text("datasets: [synthetic]\n")
    seen = {}

    def run(params, root, args):
        seen["epochs"], seen["lam"] = params.train.epochs, params.model.lambda_flow
        return {}

    rc = stage_main(
        "probe",
        run,
        ["--params", str(tmp_path / "params.yaml"), "--set", "train.epochs=3", "--set", "model.lambda_flow=0.25"],
        positionals=(),
    )
    assert rc == 0 and seen == {"epochs": 3, "lam": 0.25}
