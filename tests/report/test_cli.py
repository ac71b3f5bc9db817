"""`stvfm report --paper` and the registered subcommands."""

from __future__ import annotations

from stvfm.cli import build_parser, main


def test_report_and_baselines_commands_are_registered():
    helptext = build_parser().format_help()
    assert "baselines" in helptext and "report" in helptext


def test_report_paper_prints_table2_rows(capsys):
    assert main(["report", "--paper", "bikenyc1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 18
    assert out[-1].split() == ["ST-VFM", "RMSE", "3.38", "MAE", "1.2"]


def test_report_paper_unknown_dataset_is_a_clear_error(capsys):
    assert main(["report", "--paper", "mnist"]) == 2
    assert "no Table 2 rows for 'mnist'" in capsys.readouterr().err
