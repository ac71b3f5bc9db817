"""The download stage against a local HTTP server on 127.0.0.1: checksums, lock pinning, mirror, resume, offline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from pipelines.download import main as download_main
from stvfm.config import params_from_dict
from stvfm.datasets import registry
from stvfm.datasets.download import ARCHIVE_ENV, CACHE_DIR, MIRROR_ENV, run_download, sha256_file
from stvfm.datasets.lock import LOCK_ENV, SourcesLock, lock_path
from stvfm.datasets.registry import DatasetSpec, Source
from stvfm.errors import ConfigError, DataError, DownloadError
from stvfm.io import read_json

# about 1 MiB of UniST-shaped JSON (the download stage refuses a body that is not a UniST JSON object before pinning)
PAYLOAD = json.dumps(
    {
        "X_train": [[float(i) for i in range(125_000)], []],
        "X_val": [[], []],
        "X_test": [[], []],
        "timestamps": {"train": [], "val": [], "test": []},
    }
).encode()
FILE = "Toy_short.json"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test directory; honours ``Range: bytes=N-`` when the server's ``ranges`` flag is set."""

    def log_message(self, *a):  # keep pytest output clean
        pass

    def do_GET(self):  # the name http.server dispatches to
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng and self.server.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.server.truncate:  # the connection drops mid-transfer (once)
            data, self.server.truncate = data[: self.server.truncate], 0
            self.close_connection = True
        self.wfile.write(data)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / FILE).write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.requests, httpd.ranges, httpd.root, httpd.truncate = [], True, root, 0
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{FILE}"


@pytest.fixture
def toy(monkeypatch):
    """Register a dataset 'toy' whose one source URL/sha the test chooses."""
    for env in (MIRROR_ENV, LOCK_ENV, ARCHIVE_ENV):
        monkeypatch.delenv(env, raising=False)

    def make(url: str, sha256: str | None = None, filename: str = FILE) -> DatasetSpec:
        spec = DatasetSpec(
            "toy",
            "Toy",
            "Test",
            "Nowhere",
            ("2020-01-01", "2020-01-02"),
            60,
            (4, 4),
            2,
            ("inflow", "outflow"),
            sources=(Source(url=url, filename=filename, sha256=sha256),),
        )
        monkeypatch.setitem(registry.DATASETS, "toy", spec)
        return spec

    return make


def params(**data):
    return params_from_dict({"data": data})


def leftovers(root: Path) -> list[str]:
    raw = root / "data" / "raw"
    return sorted(p.relative_to(root).as_posix() for p in raw.rglob("*") if p.is_file()) if raw.exists() else []


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_with_published_checksum(tmp_path, server, toy):
    toy(f"{server.url}/{FILE}", SHA)
    raw = run_download("toy", params(), tmp_path)
    assert raw == tmp_path / "data" / "raw" / "toy"
    assert (raw / FILE).read_bytes() == PAYLOAD
    m = read_json(raw / "manifest.json")
    assert m["dataset"] == "toy" and m["kind"] == "unist" and m["source_kind"] == "paper"
    assert m["files"] == [
        {"name": FILE, "sha256": SHA, "bytes": len(PAYLOAD), "url": f"{server.url}/{FILE}", "kind": "unist"}
    ]
    assert (m["grid"], m["interval_minutes"], m["start"], m["end"]) == (
        [4, 4],
        60,
        "2020-01-01T00:00:00",
        "2020-01-03T00:00:00",
    )
    assert not lock_path(tmp_path).exists()  # a published checksum needs no pin
    assert not list((raw.parent / CACHE_DIR).glob("*.part"))


def test_checksum_mismatch_leaves_nothing(tmp_path, server, toy):
    toy(f"{server.url}/{FILE}", "0" * 64)
    with pytest.raises(DownloadError) as e:
        run_download("toy", params(), tmp_path)
    msg = str(e.value)
    assert "dataset 'toy'" in msg and FILE in msg and "checksum mismatch" in msg and server.url in msg
    assert leftovers(tmp_path) == []
    assert not lock_path(tmp_path).exists()


def test_lock_pins_first_download_and_enforces_later(tmp_path, server, toy):
    url = f"{server.url}/{FILE}"
    toy(url)  # no published checksum
    run_download("toy", params(), tmp_path)
    lock = SourcesLock.load(lock_path(tmp_path))
    assert lock.files[url]["sha256"] == SHA and lock.files[url]["bytes"] == len(PAYLOAD)
    assert read_json(tmp_path / "data" / "raw" / "toy" / "manifest.json")["files"][0]["sha256"] == SHA

    n = len(server.requests)  # a rerun reuses the verified copy: no network
    run_download("toy", params(), tmp_path)
    assert len(server.requests) == n

    # upstream changes the file: a fresh download must match the pin
    (server.root / FILE).write_bytes(PAYLOAD[::-1])
    for p in (tmp_path / "data" / "raw").iterdir():
        __import__("shutil").rmtree(p)
    before = lock_path(tmp_path).read_text()
    with pytest.raises(DownloadError, match=r"checksum mismatch.*Toy_short\.json|Toy_short\.json.*checksum mismatch"):
        run_download("toy", params(), tmp_path)
    assert leftovers(tmp_path) == []
    assert lock_path(tmp_path).read_text() == before


@pytest.mark.parametrize("how", ["params", "env", "env-subdir"])
def test_mirror_is_used_first(tmp_path, server, toy, monkeypatch, how):
    toy(f"{server.url}/{FILE}", SHA)
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / ("toy" if how == "env-subdir" else "") / FILE).write_bytes(PAYLOAD)
    if how == "params":
        p = params(mirror_dir="mirror")  # relative to the project root
    else:
        monkeypatch.setenv(MIRROR_ENV, str(mirror))
        p = params()
    raw = run_download("toy", p, tmp_path)
    assert server.requests == []
    assert (raw / FILE).read_bytes() == PAYLOAD
    assert not (raw.parent / CACHE_DIR).exists()


def test_mirror_with_wrong_file_is_an_error(tmp_path, server, toy):
    toy(f"{server.url}/{FILE}", SHA)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / FILE).write_bytes(b"not the file")
    with pytest.raises(DownloadError, match=r"checksum mismatch for 'Toy_short.json' at mirror/Toy_short.json"):
        run_download("toy", params(mirror_dir="mirror"), tmp_path)
    assert server.requests == [] and leftovers(tmp_path) == []


def test_mirror_pins_unknown_checksum(tmp_path, toy):
    url = closed_port_url()
    toy(url)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / FILE).write_bytes(PAYLOAD)
    run_download("toy", params(mirror_dir="m"), tmp_path)
    assert SourcesLock.load(lock_path(tmp_path)).sha256(url) == SHA


def test_offline_error_names_dataset_file_url_and_place(tmp_path, toy, capsys, monkeypatch):
    url = closed_port_url()
    toy(url, SHA)
    with pytest.raises(DownloadError) as e:
        run_download("toy", params(), tmp_path)
    msg = str(e.value)
    for part in ("dataset 'toy'", f"file '{FILE}'", url, "data.mirror_dir", MIRROR_ENV, f"data/raw/toy/{FILE}"):
        assert part in msg, part
    assert "\n" not in msg
    assert leftovers(tmp_path) == []

    # with a mirror configured the message names the exact path in it
    with pytest.raises(DownloadError, match=str(tmp_path / "mir" / FILE)):
        run_download("toy", params(mirror_dir="mir"), tmp_path)

    # the DVC entry point: one line on stderr, exit 2
    (tmp_path / "params.yaml").write_text("datasets: [toy]\n")
    monkeypatch.chdir(tmp_path)
    assert download_main(["toy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("download toy: error:") and url in err[0]
    assert not (tmp_path / "data" / "raw" / "toy").exists()


@pytest.mark.parametrize("ranges", [True, False])
def test_resume_from_partial_download(tmp_path, server, toy, ranges):
    server.ranges = ranges
    toy(f"{server.url}/{FILE}", SHA)
    cache = tmp_path / "data" / "raw" / CACHE_DIR
    cache.mkdir(parents=True)
    half = len(PAYLOAD) // 2
    (cache / f"{FILE}.part").write_bytes(PAYLOAD[:half] if ranges else b"x" * half)
    raw = run_download("toy", params(), tmp_path)
    assert sha256_file(raw / FILE) == SHA
    assert server.requests == [(f"/{FILE}", f"bytes={half}-")]
    assert not (cache / f"{FILE}.part").exists()


def test_interrupted_transfer_resumes_on_the_next_run(tmp_path, server, toy):
    toy(f"{server.url}/{FILE}", SHA)
    server.truncate = 300_000
    with pytest.raises(DownloadError, match="partial download is kept; run again to resume"):
        run_download("toy", params(), tmp_path)
    part = tmp_path / "data" / "raw" / CACHE_DIR / f"{FILE}.part"
    kept = part.stat().st_size  # whole 64 KiB chunks received before the drop
    assert 200_000 < kept <= 300_000
    assert not (tmp_path / "data" / "raw" / "toy").exists()
    raw = run_download("toy", params(), tmp_path)
    assert sha256_file(raw / FILE) == SHA and not part.exists()
    assert server.requests[-1] == (f"/{FILE}", f"bytes={kept}-")


def test_http_404_is_a_download_error(tmp_path, server, toy):
    toy(f"{server.url}/missing.json", SHA)
    with pytest.raises(DownloadError, match="404"):
        run_download("toy", params(), tmp_path)
    assert leftovers(tmp_path) == []


def test_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        run_download("nope", params(), tmp_path)
    assert not (tmp_path / "data").exists()


def test_failed_rerun_keeps_the_previous_complete_copy(tmp_path, server, toy):
    toy(f"{server.url}/{FILE}", SHA)
    raw = run_download("toy", params(), tmp_path)
    before = sorted(p.name for p in raw.iterdir())
    toy(f"{server.url}/other.json", SHA, filename="other.json")  # now a source that fails (404)
    with pytest.raises(DownloadError):
        run_download("toy", params(), tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == before


# ------------------------------------------------------------------------------ bodies that must never be pinned
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Quota exceeded</body></html>\n"
BAD = {
    "html": (HTML, "an HTML page"),
    "truncated": (PAYLOAD[: len(PAYLOAD) // 3], "a truncated JSON file"),
    "empty": (b"", "an empty file"),
}


def cache_files(root: Path) -> list[str]:
    cache = root / "data" / "raw" / CACHE_DIR
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.mark.parametrize("bad", list(BAD))
def test_garbage_in_the_mirror_is_refused_and_nothing_pinned(tmp_path, toy, capsys, monkeypatch, bad):
    body, what = BAD[bad]
    url = closed_port_url()
    toy(url)  # no published checksum: the first copy would be pinned
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / FILE).write_bytes(body)
    (tmp_path / "params.yaml").write_text("datasets: [toy]\ndata: {mirror_dir: mirror}\n")
    monkeypatch.chdir(tmp_path)
    assert download_main(["toy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("download toy: error:") and what in err[0], err
    assert FILE in err[0] and "nothing was pinned or cached" in err[0]
    assert not lock_path(tmp_path).exists() and leftovers(tmp_path) == [] and cache_files(tmp_path) == []


def test_html_page_from_the_server_is_refused_and_nothing_cached(tmp_path, server, toy):
    (server.root / FILE).write_bytes(HTML)  # a login/quota page where the file should be
    toy(f"{server.url}/{FILE}")
    with pytest.raises(DownloadError, match=f"'{FILE}' downloaded from {server.url}/{FILE} is an HTML page"):
        run_download("toy", params(), tmp_path)
    assert not lock_path(tmp_path).exists() and leftovers(tmp_path) == [] and cache_files(tmp_path) == []
    # the real file afterwards downloads and pins normally
    (server.root / FILE).write_bytes(PAYLOAD)
    run_download("toy", params(), tmp_path)
    assert SourcesLock.load(lock_path(tmp_path)).sha256(f"{server.url}/{FILE}") == SHA


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_the_published_archive_in_the_mirror(tmp_path, toy):
    url = closed_port_url()
    toy(url)
    (tmp_path / "m").mkdir()
    _zip(tmp_path / "m" / "UniST-dataset.zip", {"dataset/Other_short.json": b"{}", f"dataset/{FILE}": PAYLOAD})
    raw = run_download("toy", params(mirror_dir="m"), tmp_path)
    assert (raw / FILE).read_bytes() == PAYLOAD
    assert SourcesLock.load(lock_path(tmp_path)).sha256(url) == SHA  # pinned under the file's own URL
    # a damaged archive is one clear error
    (tmp_path / "data" / "raw" / "toy" / FILE).unlink()
    (tmp_path / "data" / "raw" / CACHE_DIR / FILE).unlink()
    z = (tmp_path / "m" / "UniST-dataset.zip").read_bytes()
    (tmp_path / "m" / "UniST-dataset.zip").write_bytes(z[: len(z) // 2])
    with pytest.raises(DownloadError, match=r"cannot read 'Toy_short.json' from the archive m/UniST-dataset.zip"):
        run_download("toy", params(mirror_dir="m"), tmp_path)


def test_an_archive_holding_garbage_is_refused(tmp_path, toy):
    toy(closed_port_url())
    (tmp_path / "m").mkdir()
    _zip(tmp_path / "m" / "all.zip", {f"dataset/{FILE}": HTML})
    with pytest.raises(DownloadError, match=r"from the archive m/all.zip \(dataset/Toy_short.json\) is an HTML page"):
        run_download("toy", params(mirror_dir="m"), tmp_path)
    assert not lock_path(tmp_path).exists() and cache_files(tmp_path) == []


def test_the_published_archive_downloaded_when_the_file_is_not(tmp_path, server, toy, monkeypatch):
    _zip(server.root / "UniST.zip", {f"dataset/{FILE}": PAYLOAD})
    url = f"{server.url}/missing/{FILE}"  # 404
    toy(url)
    monkeypatch.setenv(ARCHIVE_ENV, f"{server.url}/UniST.zip")
    raw = run_download("toy", params(), tmp_path)
    assert (raw / FILE).read_bytes() == PAYLOAD
    pins = SourcesLock.load(lock_path(tmp_path)).files
    assert pins[url]["sha256"] == SHA and f"{server.url}/UniST.zip" in pins
    assert "UniST-dataset.zip" in cache_files(tmp_path)


def test_fixtures_are_never_pinned_into_the_projects_lock(tmp_path, toy, monkeypatch):
    from stvfm.datasets.unist_fixtures import MARKER

    url = closed_port_url()
    toy(url)
    (tmp_path / "fx").mkdir()
    (tmp_path / "fx" / FILE).write_bytes(PAYLOAD)
    (tmp_path / "fx" / MARKER).write_text("generated")
    with pytest.raises(
        DownloadError, match=r"generated fixture .*refusing to pin it into data/sources.lock.json.*" + LOCK_ENV
    ):
        run_download("toy", params(mirror_dir="fx"), tmp_path)
    assert not lock_path(tmp_path).exists()
    monkeypatch.setenv(LOCK_ENV, "fx/fixtures.lock.json")  # relative to the project root
    run_download("toy", params(mirror_dir="fx"), tmp_path)
    assert lock_path(tmp_path) == tmp_path / "fx" / "fixtures.lock.json"
    assert SourcesLock.load(tmp_path / "fx" / "fixtures.lock.json").sha256(url) == SHA
    assert not (tmp_path / "data" / "sources.lock.json").exists()


# ------------------------------------------------------------------------------------------------- local sources
def _npz(path: Path) -> Path:
    np.savez(path, flow=np.arange(2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 4, 4, 2), freq_minutes=np.int64(60))
    return path


def test_local_npz_is_copied(tmp_path):
    _npz(tmp_path / "mine.npz")
    p = params_from_dict({"local_sources": {"mine": {"path": "mine.npz", "like": "bikenyc1"}}})
    raw = run_download("mine", p, tmp_path)
    m = read_json(raw / "manifest.json")
    assert m["kind"] == "npz" and m["source_kind"] == "local" and m["source_path"] == "mine.npz"
    assert m["files"][0]["sha256"] == sha256_file(tmp_path / "mine.npz") == sha256_file(raw / "mine.npz")
    assert m["like"] == "bikenyc1"
    # the file describes itself: nothing of bikenyc1's table row (span, grid) is claimed for it
    assert (m["start"], m["end"], m["grid"], m["interval_minutes"], m["bbox"]) == (None, None, None, None, None)


def test_local_zarr_and_trips(tmp_path):
    store = tmp_path / "s.zarr"
    (store / "flow").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (store / "flow" / "c0").write_bytes(b"abc")
    (tmp_path / "t.csv").write_text("start_time,end_time,start_lat,start_lon,end_lat,end_lon\n")
    p = params_from_dict(
        {"local_sources": {"z": "s.zarr", "t": {"path": "t.csv", "bbox": [1, 2, 3, 4], "interval_minutes": 15}}}
    )
    mz = read_json(run_download("z", p, tmp_path) / "manifest.json")
    assert mz["kind"] == "zarr" and mz["files"][0]["bytes"] == 5 and len(mz["files"][0]["sha256"]) == 64
    assert (tmp_path / "data" / "raw" / "z" / "s.zarr" / "flow" / "c0").read_bytes() == b"abc"
    mt = read_json(run_download("t", p, tmp_path) / "manifest.json")
    assert mt["kind"] == "trips" and mt["bbox"] == [1, 2, 3, 4] and mt["interval_minutes"] == 15


@pytest.mark.parametrize(
    ("path", "match"), [("nothere.npz", "not found.*local_sources.bad.path"), ("x.txt", "must be an .npz")]
)
def test_local_errors(tmp_path, path, match):
    (tmp_path / "x.txt").write_text("hi")
    p = params_from_dict({"local_sources": {"bad": path}})
    with pytest.raises(DataError, match=match):
        run_download("bad", p, tmp_path)
    assert not (tmp_path / "data" / "raw" / "bad").exists()


@pytest.mark.real
def test_real_sample_through_local_sources(tmp_path, real_data_dir):
    p = params_from_dict(
        {"local_sources": {"tail": {"path": str(real_data_dir / "bikenyc1_tail.npz"), "like": "bikenyc1"}}}
    )
    m = read_json(run_download("tail", p, tmp_path) / "manifest.json")
    assert m["files"][0]["sha256"] == "65746ec6cef79c39cbcda6f4e8c3dab9f8a4a5d25a16bac6a412472ef7b1d85e"
    assert m["files"][0]["bytes"] == 265_502 and m["kind"] == "npz"


def test_registry_sources_are_real_urls():
    for spec in registry.DATASETS.values():
        for s in (*spec.sources, *spec.trip_sources):
            assert s.url.startswith("https://") and s.filename in s.url, s
            assert "github.com/tsinghua-fib-lab/UniST/raw" not in s.url
    assert registry.DATASETS["bikenyc1"].sources[0].filename == "BikeNYC_short.json"
    trips = registry.get_spec("taxinyc2-trips")
    assert [s.filename for s in trips.sources] == [
        "yellow_tripdata_2015-01.parquet",
        "yellow_tripdata_2015-02.parquet",
        "yellow_tripdata_2015-03.parquet",
        "taxi_zones.zip",
    ]
    assert trips.bbox is not None and trips.grid == (10, 20)  # the source grid (Table 1 prints 20x10)
    with pytest.raises(ConfigError, match="no raw trip records"):
        registry.get_spec("crowd-trips")


def test_committed_lock_file_is_valid(project_root):
    lock = SourcesLock.load(lock_path(project_root))
    assert os.path.exists(lock.path)
    known = {s.url for spec in registry.DATASETS.values() for s in (*spec.sources, *spec.trip_sources)}
    assert set(lock.files) <= known
