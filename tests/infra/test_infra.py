"""infra/: the cluster launcher YAML passes Ray's own schema validator; the KubeRay, MLflow and storage manifests and
the Dockerfile carry the fields that matter (image, GPU requests, entrypoint, shared storage, token auth, private
addresses only)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
IMAGE = "ghcr.io/stvfm/stvfm:0.1.0"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((INFRA / name).read_text()) if d]


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {len(hits)}"
    return hits[0]


def _env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# ---------------------------------------------------------------- cluster launcher
@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load((INFRA / "launcher" / "cluster.yaml").read_text())


def test_launcher_passes_rays_schema_validator(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))  # what `ray up` runs before touching the cloud


def test_launcher_validator_catches_mistakes(launcher):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(launcher)
    bad["available_node_types"]["gpu_worker"]["resourcez"] = {"GPU": 4}
    with pytest.raises(jsonschema.ValidationError, match="resourcez"):
        validate_config(prepare_config(bad))
    bad = copy.deepcopy(launcher)
    bad["head_node_type"] = "missing"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(bad))


def test_launcher_gpus_image_storage_auth_private(launcher):
    assert launcher["docker"]["image"] == IMAGE
    gpu = launcher["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] * gpu["min_workers"] == 8 and gpu["node_config"]["InstanceType"].startswith("g5.")
    assert launcher["available_node_types"][launcher["head_node_type"]]["resources"] == {"CPU": 0}
    opts = " ".join(launcher["docker"]["run_options"])
    assert "-v /mnt/efs:/mnt/shared" in opts and "STVFM_ROOT=/mnt/shared/stvfm" in opts
    assert re.search(r"MLFLOW_TRACKING_URI=http://[\w.-]+\.internal:5000", opts)
    assert "RAY_AUTH_MODE=token" in opts and "RAY_AUTH_TOKEN_PATH=" in opts
    assert any("auth_token" in k for k in launcher["file_mounts"])
    head = " ".join(launcher["head_start_ray_commands"])
    workers = " ".join(launcher["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head and "RAY_AUTH_MODE=token ray start --address" in workers
    assert "--dashboard-host=127.0.0.1" in head  # reach it with `ray dashboard` (SSH tunnel)
    assert launcher["provider"]["use_internal_ips"] is True
    cidrs = [r["CidrIp"] for p in launcher["provider"]["security_group"]["IpPermissions"] for r in p["IpRanges"]]
    assert cidrs and all(not c.startswith("0.0.0.0") for c in cidrs)
    assert any("mount -t nfs4" in c for c in launcher["initialization_commands"])


# ---------------------------------------------------------------- KubeRay
def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


@pytest.mark.parametrize(("name", "kind"), [("k8s/raycluster.yaml", "RayCluster"), ("k8s/rayjob.yaml", "RayJob")])
def test_kuberay_gpus_image_storage_auth(name, kind):
    doc = _one(_docs(name), kind)
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["namespace"] == "stvfm"
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == "2.60.0"
    assert spec["authOptions"] == {"mode": "token", "secretName": "stvfm-ray-token"}
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head["rayStartParams"]["num-cpus"] == "0"
    assert not spec.get("enableIngress", False)
    hc = head["template"]["spec"]["containers"][0]
    assert hc["image"] == IMAGE and "nvidia.com/gpu" not in hc["resources"]["limits"]
    gpus = 0
    for g in spec["workerGroupSpecs"]:
        pod = g["template"]["spec"]
        c = pod["containers"][0]
        assert c["image"] == IMAGE
        req, lim = c["resources"]["requests"], c["resources"]["limits"]
        assert req["nvidia.com/gpu"] == lim["nvidia.com/gpu"]  # GPUs: requests == limits (extended resource)
        gpus += int(lim["nvidia.com/gpu"]) * g["replicas"]
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        for p in (pod, head["template"]["spec"]):
            vols = {v["name"]: v for v in p["volumes"]}
            assert vols["shared"]["persistentVolumeClaim"]["claimName"] == "stvfm-shared"
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/mnt/shared", "/dev/shm"} <= mounts
        env = _env(c)
        assert env["STVFM_ROOT"] == "/mnt/shared/stvfm"
        assert env["MLFLOW_TRACKING_URI"] == "http://stvfm-mlflow.stvfm.svc.cluster.local:5000"
    assert gpus == 8


def test_rayjob_entrypoint_runs_the_study_on_shared_storage():
    job = _one(_docs("k8s/rayjob.yaml"), "RayJob")["spec"]
    ep = job["entrypoint"].split()
    assert ep[:3] == ["python", "-m", "tune.run"]
    assert ep[ep.index("--profile") + 1] == "paper" and ep[ep.index("--root") + 1] == "/mnt/shared/stvfm"
    assert job["shutdownAfterJobFinishes"] is True and job["backoffLimit"] == 0


def test_shared_storage_is_read_write_many():
    pvc = _one(_docs("k8s/storage.yaml"), "PersistentVolumeClaim", "stvfm-shared")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["metadata"]["namespace"] == "stvfm"


# ---------------------------------------------------------------- MLflow server
def test_mlflow_server_db_backend_artifact_store_private():
    docs = _docs("k8s/mlflow.yaml")
    dep = _one(docs, "Deployment", "stvfm-mlflow")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    opt = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    assert c["command"] == ["mlflow", "server"] and c["image"] == IMAGE
    assert opt["--backend-store-uri"].startswith("postgresql://")
    assert opt["--artifacts-destination"].startswith("s3://") and "--serve-artifacts" in args
    assert "stvfm-mlflow.stvfm.svc.cluster.local:5000" in opt["--allowed-hosts"].split(",")
    env = _env(c)
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "stvfm-mlflow-db", "key": "password"}}
    db = _one(docs, "StatefulSet", "stvfm-mlflow-db")
    pg = db["spec"]["template"]["spec"]["containers"][0]
    assert pg["image"].startswith("postgres:") and "secretKeyRef" in _env(pg)["POSTGRES_PASSWORD"]
    assert db["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"]["type"] == "ClusterIP", svc["metadata"]["name"]


def test_no_public_exposure_or_plaintext_secrets_anywhere():
    for f in sorted(INFRA.rglob("*.yaml")):
        text = f.read_text()
        for d in (d for d in yaml.safe_load_all(text) if d and "kind" in d):
            assert d["kind"] not in ("Ingress",), f
            if d["kind"] == "Service":
                assert d["spec"].get("type", "ClusterIP") == "ClusterIP", f
        assert not re.search(r"(?i)(password|secret_access_key|auth_token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{12,}", text), f
        values = []
        _walk(list(yaml.safe_load_all(text)), values)
        assert "LoadBalancer" not in values and "NodePort" not in values, f


def _walk(node, out: list) -> None:
    if isinstance(node, dict):
        for v in node.values():
            _walk(v, out)
    elif isinstance(node, list):
        for v in node:
            _walk(v, out)
    else:
        out.append(node)


# ---------------------------------------------------------------- image
def test_dockerfile_pins_ray_installs_package_runs_unprivileged():
    text = (INFRA / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == "FROM rayproject/ray:2.60.0-py311-gpu"
    assert any(line.startswith("RUN pip install --no-cache-dir .") for line in lines)
    for pkg in ("stvfm", "pipelines", "tune", "pyproject.toml", "params.yaml"):
        assert any(line.startswith("COPY") and pkg in line for line in lines), pkg
    assert lines[-2] == "USER ray"
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "data", ".git", "mlruns"} <= set(ignore)
    import tomllib

    pins = tomllib.loads((INFRA.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(p.startswith("ray[") and p.endswith("==2.60.0") for p in pins)  # image tag == package pin


# ---------------------------------------------------------------- MLflow server locked down (issue 11)
def _mlflow_container() -> dict:
    dep = _one(_docs("k8s/mlflow.yaml"), "Deployment", "stvfm-mlflow")
    return dep["spec"]["template"]["spec"]["containers"][0]


def test_mlflow_server_requires_authentication():
    c = _mlflow_container()
    args = c["args"]
    assert args[args.index("--app-name") + 1] == "basic-auth"
    env = _env(c)
    ini_path = env["MLFLOW_AUTH_CONFIG_PATH"]
    cm = _one(_docs("k8s/mlflow.yaml"), "ConfigMap", "stvfm-mlflow-auth")
    import configparser

    ini = configparser.ConfigParser()
    ini.read_string(cm["data"][Path(ini_path).name])
    assert ini["mlflow"]["default_permission"] in ("READ", "NO_PERMISSIONS")
    assert "admin_password" not in ini["mlflow"]  # the admin password comes from a secret, not the ConfigMap
    assert ":" not in ini["mlflow"]["database_uri"].split("@")[0].removeprefix("postgresql://")  # no password
    assert (
        "secretKeyRef" in env["MLFLOW_AUTH_ADMIN_PASSWORD"] and "secretKeyRef" in env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    )
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(ini_path).parent) in mounts
    # the Ray pods, the server's only clients, log in with a user from a secret
    for name in ("k8s/raycluster.yaml", "k8s/rayjob.yaml"):
        spec = _cluster_spec(_one(_docs(name), "RayCluster" if "cluster" in name else "RayJob"))
        for tpl in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]:
            e = _env(tpl["spec"]["containers"][0])
            assert e["MLFLOW_TRACKING_USERNAME"]["secretKeyRef"]["name"] == "stvfm-mlflow-client", name
            assert e["MLFLOW_TRACKING_PASSWORD"]["secretKeyRef"]["name"] == "stvfm-mlflow-client", name


def test_mlflow_network_policy_admits_only_ray_pods():
    docs = _docs("k8s/mlflow.yaml")
    pols = [d for d in docs if d["kind"] == "NetworkPolicy"]
    server = [p for p in pols if p["spec"]["podSelector"]["matchLabels"] == {"app": "stvfm-mlflow"}]
    assert len(server) == 1 and server[0]["spec"]["policyTypes"] == ["Ingress"]
    rules = server[0]["spec"]["ingress"]
    assert len(rules) == 1 and [p["port"] for p in rules[0]["ports"]] == [5000]
    sources = rules[0]["from"]
    assert len(sources) == 1 and set(sources[0]) == {"podSelector"}  # no namespaceSelector / ipBlock: nothing else
    admitted = sources[0]["podSelector"]["matchLabels"]
    # exactly the Ray pods carry that label: every head and worker template of both KubeRay manifests ...
    for name in ("k8s/raycluster.yaml", "k8s/rayjob.yaml"):
        spec = _cluster_spec(_one(_docs(name), "RayCluster" if "cluster" in name else "RayJob"))
        for tpl in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]:
            assert admitted.items() <= tpl["metadata"]["labels"].items(), name
    # ... and no other pod template in infra/
    for f in sorted(INFRA.rglob("*.yaml")):
        for d in (d for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") in ("Deployment", "StatefulSet")):
            labels = d["spec"]["template"]["metadata"].get("labels", {})
            assert not admitted.items() <= labels.items(), (f, d["metadata"]["name"])
    # the database: only the server
    db = [p for p in pols if p["spec"]["podSelector"]["matchLabels"] == {"app": "stvfm-mlflow-db"}]
    assert len(db) == 1 and db[0]["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app": "stvfm-mlflow"}}}
    ]


def test_mlflow_db_password_never_in_argv():
    docs = _docs("k8s/mlflow.yaml")
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            argv = " ".join(map(str, c.get("command", []) + c.get("args", [])))
            assert "$(" not in argv, (d["metadata"]["name"], argv)  # no env var expanded into the arguments
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", argv), argv  # no user:password@ in a URI
            for e in c.get("env", []):
                if re.search(r"(?i)pass|secret|key", e["name"]):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], e["name"]
    c = _mlflow_container()
    assert _env(c)["PGPASSWORD"] == {"secretKeyRef": {"name": "stvfm-mlflow-db", "key": "password"}}
