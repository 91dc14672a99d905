"""Deployment configuration: every YAML parses, pods stay hardened, kustomize references resolve.

Kustomize and Docker are not available to the unit tests, so these checks read the files
directly: they fail when someone removes a hardening field, a probe, a limit or a file that a
kustomization refers to.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = ("ingest", "dsp", "inference", "alerts")
PORTS = {"ingest": 8000, "dsp": 9100, "inference": 9100, "alerts": 9100}
SECRETS = ("INGEST_ADMIN_TOKEN", "WEBHOOK_SIGNING_SECRET")
METRICS = (
    "streamdx_ingest_chunks_total",
    "streamdx_ingest_samples_total",
    "streamdx_http_requests_total",
    "streamdx_messages_consumed_total",
    "streamdx_messages_produced_total",
    "streamdx_dlq_messages_total",
    "streamdx_batch_seconds_bucket",
    "streamdx_consumer_lag",
    "streamdx_beats_total",
    "streamdx_labels_total",
    "streamdx_alerts_total",
)
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), ROOT / "docker-compose.yml"])
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))


def _load(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(directory.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _load(path)
        if isinstance(doc, dict) and "kind" in doc
    ]


def _base_workloads(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _k8s_objects(K8S / "base") if doc["kind"] == kind}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------- parsing


def test_there_is_something_to_check() -> None:
    assert (ROOT / "Dockerfile").is_file()
    assert (ROOT / ".dockerignore").is_file()
    assert (ROOT / "docker-compose.yml").is_file()
    assert len(YAML_FILES) > 10
    assert {p.parent.relative_to(K8S).as_posix() for p in KUSTOMIZATIONS} >= {
        "base",
        "components/keda",
        "overlays/dev",
        "overlays/prod",
        "overlays/jetson",
    }


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_parses(path: Path) -> None:
    docs = _load(path)
    assert docs, f"{_rel(path)} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{_rel(path)}: every document must be a mapping"


def test_grafana_dashboard_is_json_and_shows_every_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamdx.json").read_text())
    exprs = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    missing = [m for m in METRICS if m not in exprs]
    assert not missing, f"dashboard has no panel for {missing}"
    datasource = _load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    uids = {ds["uid"] for ds in datasource["datasources"]}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_prometheus_scrapes_the_four_services() -> None:
    config = _load(DEPLOY / "prometheus" / "prometheus.yml")[0]
    targets = {target for job in config["scrape_configs"] for sc in job["static_configs"] for target in sc["targets"]}
    for service in SERVICES:
        assert f"{service}:{PORTS[service]}" in targets


# ------------------------------------------------------------------------------ Kubernetes


def _assert_hardened_pod(name: str, pod: dict[str, Any], *, probes: bool) -> None:
    pod_sc = pod.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot"
    assert pod_sc.get("runAsUser") == 10001, f"{name}: pod runAsUser"
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp"
    assert pod.get("automountServiceAccountToken") is False, f"{name}: service-account token mounted"
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    assert pod["containers"], name
    for c in pod["containers"]:
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        assert sc.get("runAsUser") == 10001, f"{where}: runAsUser"
        assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
        assert sc.get("privileged", False) is False, f"{where}: privileged"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities.drop"
        assert not sc.get("capabilities", {}).get("add"), f"{where}: capabilities.add"
        resources = c.get("resources", {})
        for bound in ("requests", "limits"):
            for res in ("cpu", "memory"):
                assert res in resources.get(bound, {}), f"{where}: resources.{bound}.{res}"
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp must be an emptyDir"
        if probes:
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                assert c.get(probe, {}).get("httpGet", {}).get("path") == path, f"{where}: {probe}"
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            port = c["livenessProbe"]["httpGet"]["port"]
            assert ports.get(port, port) == PORTS[c["name"]], f"{where}: probe port"


def test_base_has_the_four_deployments_hardened() -> None:
    deployments = _base_workloads("Deployment")
    assert set(deployments) == {f"streamdx-{s}" for s in SERVICES}
    for service in SERVICES:
        deployment = deployments[f"streamdx-{service}"]
        pod = deployment["spec"]["template"]["spec"]
        _assert_hardened_pod(f"streamdx-{service}", pod, probes=True)
        (container,) = pod["containers"]
        assert container["name"] == service
        assert container["args"] == [service], "the image's ENTRYPOINT is `streamdx serve`"
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if service == "ingest":
            assert env.get("INGEST_HOST") == "0.0.0.0", "ingest binds 127.0.0.1 unless told otherwise"
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_base_topic_job_is_hardened() -> None:
    jobs = _base_workloads("Job")
    job = jobs["streamdx-topics-create"]
    pod = job["spec"]["template"]["spec"]
    _assert_hardened_pod("streamdx-topics-create", pod, probes=False)
    assert pod["containers"][0]["command"] == ["streamdx", "topics", "create"]


def test_secrets_are_referenced_never_committed() -> None:
    for path, doc in _k8s_objects(K8S):
        assert doc["kind"] != "Secret", f"{_rel(path)} commits a Secret"
    refs = {
        (d["metadata"]["name"], e["name"])
        for d in _base_workloads("Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert ("streamdx-ingest", "INGEST_ADMIN_TOKEN") in refs
    assert ("streamdx-alerts", "WEBHOOK_SIGNING_SECRET") in refs
    for example in K8S.glob("overlays/*/secrets.env.example"):
        keys = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line and line[0] != "#"}
        assert set(SECRETS) <= keys, _rel(example)


def test_base_service_hpa_pdbs() -> None:
    objects = [doc for _, doc in _k8s_objects(K8S / "base")]
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in objects:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    assert by_kind["Service"]["streamdx-ingest"]["spec"]["ports"][0]["port"] == 8000
    hpa = by_kind["HorizontalPodAutoscaler"]["streamdx-ingest"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "streamdx-ingest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in by_kind["Deployment"]["streamdx-ingest"]["spec"], "the HPA owns ingest replicas"
    assert set(by_kind["PodDisruptionBudget"]) == {f"streamdx-{s}" for s in SERVICES}
    assert "Namespace" not in by_kind and all("namespace" not in d["metadata"] for d in objects)


def test_keda_scaled_objects_target_the_workers() -> None:
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for _, doc in _k8s_objects(K8S / "components" / "keda")}
    assert set(scaled) == {"streamdx-dsp", "streamdx-inference", "streamdx-alerts"}
    for doc in scaled.values():
        (trigger,) = doc["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"]


def test_jetson_overlay_targets_gpu_arm64() -> None:
    patch = _load(K8S / "overlays" / "jetson" / "patches" / "inference-jetson.yaml")[0]
    pod = patch["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ONNX_PROVIDERS"] == "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def _local_refs(kustomization: dict[str, Any]) -> list[str]:
    refs: list[str] = [*kustomization.get("resources", []), *kustomization.get("components", [])]
    refs += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
    refs += kustomization.get("patchesStrategicMerge", [])
    for generator in kustomization.get("configMapGenerator", []):
        refs += generator.get("files", []) + generator.get("envs", [])
    return [r.split("=", 1)[-1] for r in refs if "://" not in r and not r.startswith("github.com/")]


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_rel)
def test_kustomization_references_exist(path: Path) -> None:
    kustomization = _load(path)[0]
    assert kustomization["kind"] in {"Kustomization", "Component"}
    for ref in _local_refs(kustomization):
        assert (path.parent / ref).exists(), f"{_rel(path)} refers to missing {ref}"
    for generator in kustomization.get("secretGenerator", []):
        assert not generator.get("literals"), f"{_rel(path)}: secret literals would be committed"
        for env_file in generator.get("envs", []) + generator.get("files", []):
            example = path.parent / f"{env_file.split('=', 1)[-1]}.example"
            assert example.exists(), f"{_rel(path)}: {env_file} needs a committed {example.name}"


@pytest.mark.parametrize("path", [p for p in KUSTOMIZATIONS if "overlays" in p.parts], ids=_rel)
def test_overlay_patches_keep_hardening(path: Path) -> None:
    kustomization = _load(path)[0]
    assert "../../base" in kustomization["resources"]
    assert any(
        _load(path.parent / r)[0].get("kind") == "Namespace" for r in kustomization["resources"] if r.endswith(".yaml")
    )
    secret_names = {g["name"] for g in kustomization.get("secretGenerator", [])}
    assert secret_names == {"streamdx-secrets"}
    guarded = re.compile(r"securityContext|Probe/|/livenessProbe|/readinessProbe|automountServiceAccountToken")
    patches: list[Any] = []
    for p in kustomization.get("patches", []):
        patches += _load(path.parent / p["path"]) if "path" in p else [yaml.safe_load(p["patch"])]
    for patch in patches:
        if isinstance(patch, list):  # JSON 6902
            for op in patch:
                assert not guarded.search(op["path"]), f"{_rel(path)}: patch touches {op['path']}"
                if op["path"].endswith("/resources"):
                    assert op["op"] != "remove"
                    for bound in ("requests", "limits"):
                        assert {"cpu", "memory"} <= set(op["value"][bound]), f"{_rel(path)}: {op['path']}"
        elif patch.get("kind") == "Deployment":  # strategic merge
            pod = patch["spec"]["template"]["spec"]
            assert "securityContext" not in pod
            for c in pod.get("containers", []):
                assert "securityContext" not in c, f"{_rel(path)}: {c['name']} overrides securityContext"
                assert "livenessProbe" not in c and "readinessProbe" not in c


@pytest.mark.parametrize("overlay", ["dev", "prod", "jetson"])
def test_rendered_overlay_stays_hardened(overlay: str, tmp_path: Path) -> None:
    """Render with ``kubectl kustomize`` when it is installed and check the result, not the parts."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    for example in tree.glob("overlays/*/secrets.env.example"):
        example.with_suffix("").write_text(example.read_text())
    out = subprocess.run(
        [kubectl, "kustomize", str(tree / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Deployment", "Service", "Job", "PodDisruptionBudget", "ConfigMap", "Secret"} <= kinds
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    secret = next(d["metadata"]["name"] for d in docs if d["kind"] == "Secret")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {f"streamdx-{s}" for s in SERVICES}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in namespaces, doc["metadata"]["name"]
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        _assert_hardened_pod(name, pod, probes=True)
        image = pod["containers"][0]["image"]
        assert image != "streamdx" and ":" in image, f"{name}: overlay must pin the image, got {image}"
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0].get("env", []) if "valueFrom" in e]
        assert all(r == secret for r in refs), f"{name}: {refs} != generated {secret}"
    job = next(d for d in docs if d["kind"] == "Job")
    _assert_hardened_pod(job["metadata"]["name"], job["spec"]["template"]["spec"], probes=False)
    if overlay == "prod":
        scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"}
        assert scaled == {"streamdx-dsp", "streamdx-inference", "streamdx-alerts"}
        for target in scaled:
            assert "replicas" not in deployments[target]["spec"], f"{target}: KEDA owns the replica count"


# ---------------------------------------------------------------------------- compose


def test_compose_services_hardened_and_ordered() -> None:
    compose = _load(ROOT / "docker-compose.yml")[0]
    services = compose["services"]
    assert {"kafka", "redis", "topics-init", "prometheus", "grafana", *SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["topics-init"]["entrypoint"] == ["streamdx", "topics", "create"]
    assert services["ingest"]["environment"]["INGEST_HOST"] == "0.0.0.0"
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == [name]
        assert svc["read_only"] is True, name
        assert svc["user"] == "10001:10001", name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert any(t.startswith("/tmp") for t in svc["tmpfs"]), name
        assert svc["healthcheck"]["test"], name
        assert int(svc["environment"]["HEALTH_PORT"]) == PORTS[name]
        depends = svc["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["topics-init"]["condition"] == "service_completed_successfully"
    # secrets: only interpolated from the git-ignored .env, only into the service that uses them
    owners = {
        "INGEST_ADMIN_TOKEN": "ingest",
        "WEBHOOK_SIGNING_SECRET": "alerts",
        "GF_SECURITY_ADMIN_PASSWORD": "grafana",
    }
    for name, svc in services.items():
        env = svc.get("environment", {})
        assert "env_file" not in svc, f"{name}: pass secrets one by one, not a whole env file"
        for secret, owner in owners.items():
            if name == owner:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", env[secret]), f"{name}: {secret} must be ${{VAR:?}}"
            else:
                assert secret not in env, f"{name} must not receive {secret}"
    for infra in ("kafka", "redis"):
        assert services[infra]["healthcheck"]["test"]


def test_env_example_documents_the_secrets() -> None:
    text = (ROOT / ".env.example").read_text()
    for secret in (*SECRETS, "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"^{secret}=change-me$", text, re.M), secret
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in gitignore
    assert "deploy/k8s/overlays/*/secrets.env" in gitignore


def test_dockerfile_one_non_root_pattern() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG SERVICE=", text, re.M)
    assert re.search(r"^FROM python:3\.11-slim|^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["streamdx", "serve"]' in text
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    for service in SERVICES:
        assert f'CMD ["{service}"]' in text
    assert re.search(r"^FROM service-\$\{SERVICE\}", text, re.M)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in ignore and "!shared/" in ignore and "!services/" in ignore
