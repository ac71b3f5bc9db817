"""`mlflow models serve -m models:/stvfm-synthetic@champion --env-manager local` answers like `stvfm predict`;
bad requests get HTTP 400 with the reason. The server is this test's own process group, stopped with bounded waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .servers import free_port, running
from .version_fixtures import raw_window
from tiny_city import ROOT

pytestmark = pytest.mark.slow


def test_mlflow_models_serve_answers_like_stvfm_predict(tiny_versions, tmp_path, monkeypatch):
    import mlflow
    import requests

    from stvfm.serving import registry
    from stvfm.serving.version import (
        CONFIG_FILE,
        WEIGHTS_FILE,
        read_config,
        read_weights,
    )

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    mlflow.set_tracking_uri(db)
    exp = mlflow.create_experiment("stvfm-synthetic", artifact_location=(tmp_path / "art").as_uri())
    folder = tiny_versions.tid  # the demanding case: the model needs last_time
    cfg = read_config(folder / CONFIG_FILE, "x")
    x, last = raw_window(tiny_versions.root, steps=7)
    last_s = int(last.astype(np.int64))
    with mlflow.start_run(experiment_id=exp):
        reg = registry.log_and_register_model(
            cfg,
            read_weights(folder / WEIGHTS_FILE, "x"),
            "synthetic",
            1.0,
            input_example={"flow": x[None], "last_time": np.array([last_s])},
        )
    assert reg["champion"]

    # the reference: stvfm predict on the same window, timestamps from the .npz
    start = last - np.timedelta64(6 * 60, "m")
    np.savez(tmp_path / "in.npz", flow=x, freq_minutes=np.int64(60), start=np.str_(str(start)))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": db,
        "HF_HUB_OFFLINE": "1",
        "STVFM_SERVE_MAX_WINDOWS": "2",
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # uvicorn
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "stvfm.cli",
            "predict",
            "--model",
            "models:/stvfm-synthetic@champion",
            "--input",
            "in.npz",
            "--out",
            "fc.npz",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    ref = np.load(tmp_path / "fc.npz")["forecast"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/stvfm-synthetic@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        tmp_path,
        env,
        url,
    ) as proc:

        def post(inputs):
            return requests.post(
                f"{url}/invocations",
                data=json.dumps({"inputs": inputs}),
                headers={"Content-Type": "application/json"},
                timeout=120,
            )

        ok = post({"flow": x[None].tolist(), "last_time": [last_s]})
        assert ok.status_code == 200, ok.text[:2000]
        pred = np.asarray(ok.json()["predictions"], dtype=np.float32)
        assert pred.shape == (1, 6, 16, 8, 2)
        np.testing.assert_allclose(pred[0], ref, rtol=1e-6, atol=1e-6)

        nan = x[None].copy()
        nan[0, -1, 0, 0, 0] = np.nan
        neg = x[None].copy()
        neg[0, -1, 0, 0, 0] = -3
        bad = {
            "last_time": post({"flow": x[None].tolist()}),
            "shape": post({"flow": x[None, :, :, :4].tolist(), "last_time": [last_s]}),
            "NaN": requests.post(
                f"{url}/invocations",
                headers={"Content-Type": "application/json"},
                timeout=120,
                data=json.dumps({"inputs": {"flow": nan.tolist(), "last_time": [last_s]}}),
            ),
            "at least 6": post({"flow": x[None, -4:].tolist(), "last_time": [last_s]}),
            "negative": post({"flow": neg.tolist(), "last_time": [last_s]}),
        }
        for reason, resp in bad.items():
            assert 400 <= resp.status_code < 500, (reason, resp.status_code, resp.text[:500])
            assert reason in resp.json()["message"], (reason, resp.text[:1000])
        # the pyfunc's own refusals (issue 23): the limits from STVFM_SERVE_* and the reason alone, first and short
        ours = {
            "3 windows in one request; at most 2": post(
                {"flow": np.repeat(x[None], 3, 0).tolist(), "last_time": [last_s] * 3}
            ),
            "'last_time'[0] 4611686018427387904 is outside": post(
                {"flow": x[None].tolist(), "last_time": [4611686018427387904]}
            ),
            "1 negative value(s)": bad["negative"],
            "1792 value(s) in the last 7 steps lie beyond 10000 training standard deviations": post(
                {"flow": np.full_like(x[None], 3e38).tolist(), "last_time": [last_s]}
            ),
        }
        for reason, resp in ours.items():
            msg = resp.json()["message"]
            assert resp.status_code == 400 and msg.startswith(reason.split(" ")[0]) and reason in msg, (reason, msg)
            assert len(resp.content) < 400 and "Failed to predict" not in msg, msg
    assert proc.returncode is not None
