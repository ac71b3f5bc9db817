"""The `tune` DVC stage (tune/dvc.yaml, wdir ..) is opt-in (`tune.datasets`) and not part of the default `dvc repro`."""

from __future__ import annotations

import shutil

import networkx as nx


def test_tune_stage_is_separate_from_default_repro(tmp_path, project_root, monkeypatch):
    from dvc.repo import Repo

    shutil.copy(project_root / "dvc.yaml", tmp_path / "dvc.yaml")
    import yaml

    raw = yaml.safe_load((project_root / "params.yaml").read_text())
    assert raw["tune"]["datasets"] == []  # by default no study stage: `dvc status` is clean after `make repro`
    raw["tune"]["datasets"] = ["synthetic"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "tune").mkdir()
    shutil.copy(project_root / "tune" / "dvc.yaml", tmp_path / "tune" / "dvc.yaml")
    monkeypatch.chdir(tmp_path)  # DVC addresses stages relative to the cwd
    repo = Repo.init(str(tmp_path), no_scm=True)
    try:
        # `dvc repro` with no target = the root dvc.yaml (dvc/repo/reproduce.py: targets or PROJECT_FILE)
        default = {s.addressing for s in repo.stage.collect("dvc.yaml")}
        assert "split@synthetic" in default and not any("tune" in a for a in default)
        graph = repo.index.graph
        node = {s.addressing: s for s in graph.nodes}
        planned = set().union(*({n.addressing for n in nx.descendants(graph, node[a])} | {a} for a in default))
        assert not any("tune" in a for a in planned)  # nothing upstream of the default stages is tune

        (stage,) = repo.stage.collect("tune/dvc.yaml")
        assert stage.addressing == "tune/dvc.yaml:tune@synthetic"
        assert stage.wdir == str(tmp_path) and stage.cmd == "python -m tune.run --dataset synthetic"
        assert {str(o) for o in stage.outs} == {
            "tune/results/synthetic/best.yaml",
            "tune/results/synthetic/summary.json",
        }
        # `dvc repro tune/dvc.yaml:tune@synthetic` builds the split upstream first
        upstream = {s.addressing for s in nx.descendants(graph, node[stage.addressing])}
        assert {"download@synthetic", "split@synthetic"} <= upstream
    finally:
        repo.close()


def test_no_tune_stage_by_default(tmp_path, project_root, monkeypatch):
    from dvc.repo import Repo

    shutil.copy(project_root / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(project_root / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "tune").mkdir()
    shutil.copy(project_root / "tune" / "dvc.yaml", tmp_path / "tune" / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    repo = Repo.init(str(tmp_path), no_scm=True)
    try:
        assert not any("tune" in s.addressing for s in repo.index.stages)  # nothing for `dvc status` to list
    finally:
        repo.close()
