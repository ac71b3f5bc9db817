"""Issue 11: every input a hostile new user tried, run through the DVC stage entry points (and the `stvfm` CLI).

Each case: exit code 2, one stderr line naming the file/key, and nothing outside the stage's own output changed
(for a refused input, nothing changed at all: the trees of the project and of an unrelated folder are hashed)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from harness import Project, assert_refused, changed


def _refused_and_untouched(proj: Project, r_fn, *needles: str) -> None:
    before = proj.hash()
    r = r_fn()
    assert_refused(r, *needles)
    assert changed(before, proj.hash()) == []


# ------------------------------------------------------------------ 1. dataset names never become foreign paths
@pytest.mark.parametrize("bad", [".", "..", "../x", "a/b", "/ABS", "-x", ".hidden", "a\\b", ""])
def test_bad_local_source_name_refused_at_params_load(project, bad):
    name = str(project.outside / "keep") if bad == "/ABS" else bad
    project.write_params(local_sources={name: {"path": "x.npz"}})
    _refused_and_untouched(
        project,
        lambda: project.stage("download", "synthetic"),
        "params.yaml",
        f"local_sources key {name!r}",
        "not a valid dataset name",
    )
    if name.startswith("-"):
        return  # as an argument it would be an option to argparse; as a params name it was refused above
    project.write_params(datasets=[name], local_sources={name: {"path": "x.npz"}})  # listed too: refused as well
    _refused_and_untouched(project, lambda: project.stage("download", name), "params.yaml", "not a valid dataset name")
    assert (project.outside / "keep" / "precious.txt").exists()


@pytest.mark.parametrize(("key", "value"), [("datasets", "[../grid/x]"), ("sweeps.datasets", "[a/b]")])
def test_bad_dataset_names_in_lists(project, key, value):
    _refused_and_untouched(
        project,
        lambda: project.stage("split", "synthetic", sets=(f"{key}={value}",)),
        "params.yaml",
        key.split(".")[-1],
        "not a valid dataset name",
    )


@pytest.mark.parametrize("stage", ["download", "grid", "flow", "split"])
def test_bad_dataset_argument_refused(project, stage):
    """A CLI argument is a name too: checked by the same rule before any path is built from it."""
    _refused_and_untouched(project, lambda: project.stage(stage, "../outside"), "dataset argument", "'../outside'")


def test_download_of_dot_cannot_replace_data_raw(project):
    project.data_ready(upto="download")
    (project.root / "data/raw/other").mkdir()
    (project.root / "data/raw/other/f.txt").write_text("x")
    project.write_params(local_sources={".": "x.npz"})
    _refused_and_untouched(project, lambda: project.stage("download", "."), "not a valid dataset name")


# ------------------------------------------------------------------ 2. weights that do not fit the backbone
def test_weights_file_with_foreign_keys_is_refused(project):
    f = project.root / "foo.pth"
    torch.save({"foo": torch.zeros(3)}, f)
    _refused_and_untouched(
        project,
        lambda: project.cli("weights", "verify", str(f), "--backbone", "vit_tiny"),
        "foo.pth",
        "missing from the file: pos_embed, patch_embed.proj.weight",
        "not in the backbone: foo",
    )


def test_weights_with_a_missing_block_are_not_pretrained(project):
    import timm

    from stvfm.errors import WeightsError
    from stvfm.models.backbone import build_backbone

    sd = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000).state_dict()
    full = project.root / "full.pth"
    torch.save(sd, full)  # a complete checkpoint with its classifier head: loads, pretrained
    _, info = build_backbone("vit_tiny", str(full), vfm_blocks=1)
    assert info.pretrained
    part = project.root / "part.pth"
    torch.save({k: v for k, v in sd.items() if not k.startswith("blocks.11.")}, part)
    with pytest.raises(WeightsError, match=r"missing from the file: blocks\.11\.norm1\.weight"):
        build_backbone("vit_tiny", str(part), vfm_blocks=1)


# ------------------------------------------------------------------ 3. stale ST-flow store / split
def _regrid_with_other_span(project: Project, days: int) -> None:
    project.write_params(data={"synthetic": {"span_days": days}})
    for st in ("download", "grid"):
        assert project.stage(st, "synthetic").rc == 0


def test_flow_of_another_grid_is_refused_by_split(project):
    project.data_ready()
    _regrid_with_other_span(project, 8)  # other T; flow not rerun
    _refused_and_untouched(
        project,
        lambda: project.stage("split", "synthetic"),
        "data/flow/synthetic.zarr",
        "another grid",
        "dvc repro flow@synthetic",
    )


def test_split_of_another_grid_is_refused_by_the_window_dataset(project):
    from stvfm.data.windows import WindowDataset
    from stvfm.errors import DataError
    from stvfm.paths import dataset_paths

    project.data_ready()
    paths = dataset_paths("synthetic", project.root)
    assert len(WindowDataset(paths, "train")) > 0
    _regrid_with_other_span(project, 8)
    assert project.stage("flow", "synthetic").rc == 0  # grid + flow new, split old
    with pytest.raises(DataError, match=r"split \(meta.json\) was built from another grid.*dvc repro split@synthetic"):
        WindowDataset(paths, "train")


def test_grid_stats_carry_the_grid_digest(project):
    project.data_ready(upto="grid")
    g = xr.open_zarr(project.root / "data/grid/synthetic.zarr", consolidated=False)
    stats = pd.read_parquet(project.root / "data/grid/synthetic.stats.parquet")
    assert set(stats["grid_sha256"]) == {g.attrs["grid_sha256"]}


# ------------------------------------------------------------------ 4. missing data is an error, with counts
def _zarr_source(project: Project, name: str, fill_value: float = 0.0) -> str:
    src = project.outside / f"{name}.zarr"
    T = 40
    ds = xr.Dataset(
        {"flow": (("time", "y", "x", "channel"), np.ones((T, 4, 4, 2), "f4"))},
        coords={"time": pd.date_range("2024-01-01", periods=T, freq="h"), "channel": ["inflow", "outflow"]},
    )
    ds.attrs["interval_minutes"] = 60
    ds.to_zarr(
        src, zarr_format=3, consolidated=False, encoding={"flow": {"chunks": (10, 4, 4, 2), "fill_value": fill_value}}
    )
    return str(src)


def test_zarr_input_with_a_missing_chunk(project):
    src = _zarr_source(project, "holes")
    project.write_params(datasets=["holes"], local_sources={"holes": {"path": src}})
    assert project.stage("download", "holes").rc == 0
    shutil.rmtree(project.root / "data/raw/holes/holes.zarr/flow/c/1")  # steps 10..19 now read as 0
    _refused_and_untouched(
        project, lambda: project.stage("grid", "holes"), "holes.zarr", "1 of its 4 chunks missing", "fill value 0.0"
    )


def _trips(project: Project, name: str, lat_offset: np.ndarray) -> str:
    n = len(lat_offset)
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 48, unit="h")
    df = pd.DataFrame(
        {
            "start_time": t,
            "end_time": t + pd.Timedelta(minutes=10),
            "start_lat": 40.7 + lat_offset,
            "start_lon": np.full(n, -74.0),
            "end_lat": 40.7 + lat_offset,
            "end_lon": np.full(n, -74.0),
        }
    )
    f = project.outside / f"{name}.parquet"
    df.to_parquet(f)
    return str(f)


def _trip_entry(path: str) -> dict:
    return {
        "path": path,
        "bbox": [40.6, -74.1, 40.8, -73.9],
        "grid": [4, 4],
        "interval_minutes": 60,
        "start": "2024-01-01T00:00:00",
        "end": "2024-01-03T00:00:00",
    }


def test_all_trips_outside_the_bbox(project):
    src = _trips(project, "far", np.full(100, 5.0))  # 45.7 N: far outside
    project.write_params(datasets=["far"], local_sources={"far": _trip_entry(src)})
    assert project.stage("download", "far").rc == 0
    _refused_and_untouched(
        project,
        lambda: project.stage("grid", "far"),
        "far.parquet",
        "all 100 trip records fall outside the grid",
        "bbox",
    )


def test_dropped_share_warns_in_output_and_stats(project, caplog):
    src = _trips(project, "half", np.r_[np.zeros(60), np.full(40, 5.0)])  # 40 % outside
    project.write_params(datasets=["half"], local_sources={"half": _trip_entry(src)})
    assert project.stage("download", "half").rc == 0
    with caplog.at_level(logging.WARNING):
        r = project.stage("grid", "half")
    assert r.rc == 0
    assert "WARNING: dropped inflow 40.0% (40 of 100)" in json.loads(r.out)["warning"]
    assert any("data.max_dropped_share" in m for m in caplog.messages)
    stats = pd.read_parquet(project.root / "data/grid/half.stats.parquet")
    assert list(stats["dropped_share"]) == [0.4, 0.4] and stats["warning"].str.contains("WARNING").all()
    r = project.stage("grid", "half", sets=("data.max_dropped_share=0.5",))  # under the stated share: quiet
    assert r.rc == 0 and "warning" not in json.loads(r.out)


# ------------------------------------------------------------------ 6. one line, never a traceback
@pytest.mark.parametrize(("store", "stage"), [("grid", "flow"), ("grid", "split")])
def test_corrupt_chunk_in_a_store(project, store, stage):
    project.data_ready()
    chunk = next(p for p in sorted((project.root / f"data/{store}/synthetic.zarr").rglob("c/*/*/*/*")) if p.is_file())
    chunk.write_bytes(b"garbage")
    _refused_and_untouched(
        project,
        lambda: project.stage(stage, "synthetic"),
        f"data/{store}/synthetic.zarr",
        "damaged",
        f"dvc repro {store}@synthetic",
    )


def test_corrupt_flow_chunk_is_refused_where_it_is_read(project):
    """split reads no flow values (only checks grid_sha256, shape, chunks); the window dataset reads them."""
    from stvfm.data.windows import WindowDataset
    from stvfm.errors import DataError
    from stvfm.paths import dataset_paths

    project.data_ready()
    chunk = next(p for p in sorted((project.root / "data/flow/synthetic.zarr").rglob("c/*/*/*/*")) if p.is_file())
    chunk.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"flow/synthetic.zarr.*damaged.*dvc repro flow@synthetic"):
        WindowDataset(dataset_paths("synthetic", project.root), "train")


def test_corrupt_chunk_in_a_zarr_input(project):
    src = _zarr_source(project, "bad")
    project.write_params(datasets=["bad"], local_sources={"bad": {"path": src}})
    assert project.stage("download", "bad").rc == 0
    (project.root / "data/raw/bad/bad.zarr/flow/c/2/0/0/0").write_bytes(b"garbage")
    _refused_and_untouched(project, lambda: project.stage("grid", "bad"), "bad.zarr", "damaged")


def test_npz_start_that_is_not_a_date(project):
    f = project.outside / "nodate.npz"
    np.savez(f, flow=np.ones((30, 4, 4, 2), "f4"), freq_minutes=np.int64(60), start=np.str_("next tuesday"))
    project.write_params(datasets=["nodate"], local_sources={"nodate": str(f)})
    assert project.stage("download", "nodate").rc == 0
    _refused_and_untouched(
        project, lambda: project.stage("grid", "nodate"), "nodate.npz", "'start'", "'next tuesday' is not an ISO date"
    )


def test_corrupt_local_copy_does_not_advise_a_download(project):
    f = project.outside / "broken.npz"
    f.write_bytes(b"PK\x03\x04 not really a zip")
    project.write_params(datasets=["broken"], local_sources={"broken": str(f)})
    assert project.stage("download", "broken").rc == 0
    _refused_and_untouched(project, lambda: project.stage("grid", "broken"), "broken.npz", "local_sources.broken.path")
    assert "download" not in project.stage("grid", "broken").err


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("model.heads=[1", ("model.heads=[1", "not valid YAML")),
        ("train.lr=0", ("params.yaml", "train.lr", "> 0")),
        ("train.lr=-1e-3", ("train.lr",)),
        ("data.chunk_mb=0", ("data.chunk_mb", "> 0")),
        ("model.lambda_flow=-0.5", ("model.lambda_flow", ">= 0")),
        ("model.backbone=resnet50", ("model.backbone", "'resnet50'", "vit_tiny")),
        ("model.prompt_layers=-1", ("model.prompt_layers", ">= 0")),
        ("local_sources.mine.pth=x.npz", ("local_sources.mine", "unknown key(s) pth", "path")),
        ("data.root=/tmp", ("data.root",)),
    ],
)
def test_bad_params_refused_when_params_load(project, override, needles):
    if override.startswith("local_sources"):
        project.write_params(local_sources={"mine": {"path": "x.npz"}})
    # the train stage: refused before an MLflow run is opened or a Ray worker starts (no mlflow.db appears)
    _refused_and_untouched(project, lambda: project.stage("train", "synthetic", sets=(override,)), *needles)


def test_malformed_set_in_the_cli(project):
    _refused_and_untouched(
        project,
        lambda: project.cli("data", "grid", "synthetic", "--set", "model.heads=[1"),
        "model.heads=[1",
        "not valid YAML",
    )


# ------------------------------------------------------------------ 8. trust on first use is said, not hidden
def test_datasets_table_says_which_are_trust_on_first_use(project):
    r = project.cli("datasets")
    assert r.rc == 0
    rows = {line.split()[0]: line for line in r.out.splitlines() if line and not line.startswith(("name", "checksum"))}
    assert "TOFU" in rows["bikenyc1"] and "generated" in rows["synthetic"]
    assert "trust on first use" in r.out and "sources.lock.json" in r.out


def test_download_log_says_trust_on_first_use_once(project, caplog, monkeypatch):
    from stvfm.datasets.registry import get_spec

    spec = get_spec("bikenyc1")
    mirror = project.outside / "mirror"
    mirror.mkdir()
    for src in spec.sources:
        (mirror / src.filename).write_bytes(b'{"X_train": [], "X_val": [], "X_test": []}')  # passes the format check
    project.write_params(datasets=["bikenyc1"], data={"mirror_dir": str(mirror)})
    with caplog.at_level(logging.WARNING):
        assert project.stage("download", "bikenyc1").rc == 0
    tofu = [m for m in caplog.messages if "trust on first use" in m]
    assert len(tofu) == len(spec.sources) and spec.sources[0].filename in tofu[0]
    lock = json.loads((project.root / "data/sources.lock.json").read_text())
    assert spec.sources[0].url in lock["files"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # pinned now: verified, no notice
        assert project.stage("download", "bikenyc1").rc == 0
    assert not [m for m in caplog.messages if "trust on first use" in m]


# ------------------------------------------------------------------ the ones that already passed, kept in this place
def _npz(project: Project, name: str, **arrays) -> None:
    f = project.outside / f"{name}.npz"
    np.savez(f, **arrays)
    project.write_params(datasets=[name], local_sources={name: str(f)})
    assert project.stage("download", name).rc == 0


_GOOD = np.ones((30, 4, 4, 2), "f4")


@pytest.mark.parametrize(
    ("case", "arrays", "needles"),
    [
        ("noflow", {"volume_x": _GOOD, "freq_minutes": np.int64(60)}, ("missing array 'flow'",)),
        ("rank", {"flow": _GOOD[..., 0], "freq_minutes": np.int64(60)}, ("rank 3", "expected rank 4")),
        (
            "nan",
            {
                "flow": np.where(np.arange(30)[:, None, None, None] == 5, np.nan, _GOOD).astype("f4"),
                "freq_minutes": np.int64(60),
            },
            ("non-finite", "time step 5"),
        ),
        (
            "inf",
            {
                "flow": np.where(np.arange(30)[:, None, None, None] == 7, np.inf, _GOOD).astype("f4"),
                "freq_minutes": np.int64(60),
            },
            ("non-finite", "inf"),
        ),
        ("neg", {"flow": -_GOOD, "freq_minutes": np.int64(60)}, ("negative values",)),
        ("freq", {"flow": _GOOD, "freq_minutes": np.float64(7.5)}, ("freq_minutes",)),
    ],
)
def test_bad_npz_content(project, case, arrays, needles):
    _npz(project, case, **arrays)
    _refused_and_untouched(project, lambda: project.stage("grid", case), f"{case}.npz", *needles)


def test_missing_local_path(project):
    project.write_params(datasets=["gone"], local_sources={"gone": "nowhere/gone.npz"})
    _refused_and_untouched(
        project, lambda: project.stage("download", "gone"), "nowhere/gone.npz", "local_sources.gone.path"
    )


def test_unknown_params_key(project):
    _refused_and_untouched(
        project, lambda: project.stage("grid", "synthetic", sets=("data.chunk_mbb=2",)), "unknown key(s) chunk_mbb"
    )


def test_wrong_checksum_of_a_known_weights_file(project):
    f = project.root / "dinov2_vits14_pretrain.pth"  # the official file's name, other bytes
    torch.save({"x": torch.zeros(1)}, f)
    _refused_and_untouched(
        project,
        lambda: project.cli("weights", "verify", str(f), "--backbone", "dinov2_vits14"),
        "dinov2_vits14_pretrain.pth",
        "published",
    )


class Payload:  # any class of this module is code to the unpickler; weights_only=True must refuse it
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_weights_refused(project):
    f = project.root / "pickled.pth"
    torch.save({"blocks.0.norm1.weight": torch.zeros(3), "x": Payload()}, f)
    _refused_and_untouched(project, lambda: project.cli("weights", "verify", str(f)), "pickled.pth", "weights_only")
