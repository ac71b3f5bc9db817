"""stvfm.io: a directory output is swapped in whole (renameat2 exchange, or two renames where that is missing); killed
runs' temp folders are recognised exactly (never another output's)."""

from __future__ import annotations

import pytest

from stvfm import io as sio


@pytest.mark.parametrize("exchange", [True, False])
def test_directory_swap(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(sio, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with sio.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder, no .old


def test_failed_write_keeps_the_old_output(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def write_then_fail():
        with sio.atomic_path(target) as tmp:
            tmp.mkdir()
            raise RuntimeError("bad input")

    with pytest.raises(RuntimeError, match="bad input"):
        write_then_fail()
    assert (target / "old.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_clean_stale_matches_only_its_own_temp_folders(tmp_path):
    names = [
        ".a.abcdefgh.tmp",
        ".a.old",
        ".a.b.abcdefgh.tmp",
        ".a.bcdefghi.abcdefgh.tmp",
        ".ab.abcdefgh.tmp",
        ".a.abcdefghi.tmp",
        "a",
        ".a.lock",
    ]
    for n in names:
        (tmp_path / n).mkdir()
    removed = sio.clean_stale(tmp_path / "a")
    assert sorted(removed) == [".a.abcdefgh.tmp", ".a.old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - set(removed))
