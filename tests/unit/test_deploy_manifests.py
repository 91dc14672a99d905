"""Deployment configuration: every YAML parses, pods stay hardened, kustomize references resolve.

Kustomize and Docker are not available to the unit tests, so these checks read the files
directly: they fail when someone removes a hardening field, a probe, a limit or a file that a
kustomization refers to, deploys a service that does not exist, sets an environment variable
no service reads, or lets the KEDA consumer groups drift from the workers' groups.
(``kubectl kustomize``, when installed, also renders every overlay.)
"""

from __future__ import annotations

import importlib
import inspect
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
SERVICES = ("ingest", "dsp", "inference", "alerts", "web")
#: the port of /healthz (and /readyz, /metrics where served) per service: its settings default
#: (INGEST_PORT, METRICS_PORT, WEB_PORT)
PORTS = {"ingest": 8000, "dsp": 9101, "inference": 9102, "alerts": 8001, "web": 8080}
#: the readiness endpoint: /readyz, except the web console, which serves /healthz only
READY_PATH = {"web": "/healthz"}
#: services that serve Prometheus /metrics (scraped; prometheus.io annotations on their pods)
METRICS_SERVICES = ("ingest", "dsp", "inference", "alerts")
#: services with an HTTP API or pages behind a ClusterIP Service (on the same port as /healthz)
API_SERVICES = ("ingest", "alerts", "web")
#: the placeholder image of each service's container (overlays map it with `images:`): the web
#: console has its own Dockerfile stage (WeasyPrint's system libraries), the others share one image
IMAGES = {"web": "streamdx-web"}
#: secret → the services that read it (from the `streamdx-secrets` Secret / the compose .env);
#: the console calls the ingest and alerts APIs with their admin tokens
SECRET_READERS = {
    "INGEST_ADMIN_TOKEN": {"ingest", "web"},
    "ALERTS_ADMIN_TOKEN": {"alerts", "web"},
    "WEB_SESSION_SECRET": {"web"},
}
SECRETS = tuple(SECRET_READERS)
#: where the web console writes its evaluation runs (WEB_RUNS_DIR; a volume: read-only root fs)
WEB_RUNS_DIR = "/var/lib/streamdx/web-runs"
#: WeasyPrint's system libraries (loaded with cffi at run time) and a font, in the web image only
WEASYPRINT_PACKAGES = {"libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz0b", "libharfbuzz-subset0",
                       "libcairo2", "libfontconfig1", "fontconfig", "fonts-dejavu-core"}
#: Deployments whose replica count KEDA owns (components/keda): every Kafka worker
KEDA_TARGETS = {"streamdx-dsp", "streamdx-inference", "streamdx-alerts"}
#: (Deployment, consumer group, topic) of every Kafka worker; groups are the settings' defaults
#: (DSP_GROUP, DSP_ESR_GROUP, INFERENCE_ESR_GROUP, INFERENCE_ECG_GROUP, INFERENCE_SLIDES_GROUP,
#: INFERENCE_SLIDES_MERGE_GROUP, ALERTS_*_GROUP)
CONSUMERS = {
    ("streamdx-dsp", "dsp", "ecg.samples"),
    ("streamdx-dsp", "dsp-esr", "esr.frames"),
    ("streamdx-inference", "inference-esr", "esr.heights"),
    ("streamdx-inference", "inference-ecg", "ecg.beats"),
    ("streamdx-inference", "inference-slides", "slides.tiles"),
    ("streamdx-inference", "inference-slides-merge", "slides.detections"),
    ("streamdx-alerts", "alerts-rhythm", "ecg.labels"),
    ("streamdx-alerts", "alerts-status", "ecg.status"),
    ("streamdx-alerts", "alerts-esr", "esr.forecasts"),
    ("streamdx-alerts", "alerts-webhooks", "alerts.events"),
}
GROUP_ENV = {"DSP_GROUP": "dsp", "DSP_ESR_GROUP": "dsp-esr", "INFERENCE_ESR_GROUP": "inference-esr",
             "INFERENCE_ECG_GROUP": "inference-ecg", "INFERENCE_SLIDES_GROUP": "inference-slides",
             "INFERENCE_SLIDES_MERGE_GROUP": "inference-slides-merge", "ALERTS_RHYTHM_GROUP": "alerts-rhythm",
             "ALERTS_STATUS_GROUP": "alerts-status", "ALERTS_ESR_GROUP": "alerts-esr",
             "ALERTS_DELIVERY_GROUP": "alerts-webhooks"}
MODELS_DIR = "/opt/streamdx/models"
#: replication factor of the topics the topics Job creates: one broker in dev/jetson, >= 3 in prod
TOPIC_REPLICATION = {"dev": "1", "prod": "3", "jetson": "1"}
#: read by the container health checks (Dockerfile HEALTHCHECK, compose healthcheck), not a setting
CONTAINER_ONLY_ENV = {"HEALTH_PORT"}
#: the Python runtime's own variables set in the Dockerfile
IMAGE_ONLY_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "HOME"}
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
    "streamdx_ingest_clock_drift_seconds_bucket",
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


def _existing_services() -> set[str]:
    """Services that can actually run: ``services/<dir>/streamdx_<X>/main.py`` exists."""
    return {p.parent.name.removeprefix("streamdx_") for p in (ROOT / "services").glob("*/streamdx_*/main.py")}


def _settings_env(service: str | None) -> set[str]:
    """Environment variables read by a service's pydantic settings (shared ones for ``None``)."""
    from streamdx.settings import ServiceSettings

    cls: type[Any] = ServiceSettings
    if service is not None:
        module = importlib.import_module(f"streamdx_{service}.settings")
        (cls,) = [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, ServiceSettings) and c is not ServiceSettings and c.__module__ == module.__name__
        ]
    assert not cls.model_config.get("env_prefix"), f"{cls.__name__}: env names are no longer the field names"
    return {name.upper() for name in cls.model_fields}


def _settings_default(service: str, env: str) -> Any:
    module = importlib.import_module(f"streamdx_{service}.settings")
    for _, cls in inspect.getmembers(module, inspect.isclass):
        field = getattr(cls, "model_fields", {}).get(env.lower())
        if field is not None and cls.__module__ == module.__name__:
            return field.default
    raise AssertionError(f"streamdx_{service}.settings has no setting {env}")


def _dockerfile_stages() -> dict[str, list[str]]:
    """Instructions of every Dockerfile stage by name; continuation lines joined, comments dropped."""
    logical: list[str] = []
    buf = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        logical.append(buf + stripped)
        buf = ""
    stages: dict[str, list[str]] = {}
    current: str | None = None
    for instruction in logical:
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", instruction, re.I)
        if match:
            current = match.group(1) or f"stage-{len(stages)}"
            stages[current] = []
        elif current is not None:
            stages[current].append(instruction)
    return stages


def _dockerfile_env(instructions: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.split()[0].upper() == "ENV":
            env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S+)", instruction))
    return env


def _config_literals(directory: Path) -> dict[str, str]:
    """``streamdx-config`` literals of one kustomization (base or overlay)."""
    literals: dict[str, str] = {}
    for generator in _load(directory / "kustomization.yaml")[0].get("configMapGenerator", []):
        if generator["name"] == "streamdx-config":
            literals.update(lit.split("=", 1) for lit in generator.get("literals", []))
    return literals


def _compose_services() -> dict[str, dict[str, Any]]:
    return dict(_load(ROOT / "docker-compose.yml")[0]["services"])


def _compose_served(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """compose service → the ``streamdx serve X`` it runs (services built from this repo's image)."""
    return {
        name: svc["command"][0]
        for name, svc in services.items()
        if "build" in svc and svc.get("entrypoint", ["streamdx", "serve"]) == ["streamdx", "serve"]
    }


def _keda_triggers(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(scale target, consumer group, topic) of every kafka trigger."""
    return {
        (d["spec"]["scaleTargetRef"]["name"], t["metadata"]["consumerGroup"], t["metadata"].get("topic", ""))
        for d in docs
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
    }


def _names(name: str) -> list[str]:
    """``streamdx-(a|b)`` → [a, b]; ``streamdx-a`` → [a]."""
    match = re.fullmatch(r"streamdx-\(([^()]*)\)", name)
    return match.group(1).split("|") if match else [name.removeprefix("streamdx-")]


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


def test_grafana_provisions_every_dashboard_file() -> None:
    """The file provider loads the whole dashboards folder (compose mounts it there): every JSON
    in it is provisioned, so each must parse, have its own uid and query a provisioned datasource."""
    (provider,) = _load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "streamdx.yml")[0]["providers"]
    assert provider["type"] == "file"
    mounts = _compose_services()["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    datasource = _load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    uids = {ds["uid"] for ds in datasource["datasources"]}
    files = sorted((DEPLOY / "grafana" / "dashboards").iterdir())
    assert {p.name for p in files} >= {"streamdx.json", "streamdx-alerts.json"}
    dashboards = {}
    for path in files:
        assert path.suffix == ".json", f"{_rel(path)}: the provider reads .json dashboards only"
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in dashboards, f"{_rel(path)}: duplicate uid {dashboard['uid']}"
        dashboards[dashboard["uid"]] = dashboard
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, f"{_rel(path)}: {panel['title']}"
    home = _compose_services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.rsplit("/", 1)[-1] in {p.name for p in files}


def test_prometheus_scrapes_exactly_the_services() -> None:
    config = _load(DEPLOY / "prometheus" / "prometheus.yml")[0]
    targets = {
        target
        for job in config["scrape_configs"]
        if job["job_name"].startswith("streamdx-")
        for sc in job["static_configs"]
        for target in sc["targets"]
    }
    assert targets == {f"{service}:{PORTS[service]}" for service in METRICS_SERVICES}


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
            ready = READY_PATH.get(c["name"], "/readyz")
            for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", ready)):
                assert c.get(probe, {}).get("httpGet", {}).get("path") == path, f"{where}: {probe}"
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            port = c["livenessProbe"]["httpGet"]["port"]
            assert ports.get(port, port) == PORTS[c["name"]], f"{where}: probe port"


def test_base_has_the_service_deployments_hardened() -> None:
    deployments = _base_workloads("Deployment")
    assert set(deployments) == {f"streamdx-{s}" for s in SERVICES}
    for service in SERVICES:
        deployment = deployments[f"streamdx-{service}"]
        pod = deployment["spec"]["template"]["spec"]
        _assert_hardened_pod(f"streamdx-{service}", pod, probes=True)
        (container,) = pod["containers"]
        assert container["name"] == service
        assert container["args"] == [service], "the image's ENTRYPOINT is `streamdx serve`"
        assert container["image"] == IMAGES.get(service, "streamdx"), f"{service}: placeholder image"
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if service in METRICS_SERVICES:
            assert annotations.get("prometheus.io/port") == str(PORTS[service]), service
        else:
            assert not any(k.startswith("prometheus.io/") for k in annotations), f"{service} serves no /metrics"
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
    assert refs == {(f"streamdx-{reader}", secret) for secret, readers in SECRET_READERS.items() for reader in readers}
    for secret, readers in SECRET_READERS.items():
        for reader in readers:
            assert secret in _settings_env(reader), f"streamdx_{reader}.settings does not read {secret}"
    examples = sorted(K8S.glob("overlays/*/secrets.env.example"))
    assert len(examples) == 3
    for example in examples:
        keys = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line and line[0] != "#"}
        assert keys == set(SECRETS), f"{_rel(example)}: {sorted(keys)}"


def test_base_service_hpa_pdbs() -> None:
    objects = [doc for _, doc in _k8s_objects(K8S / "base")]
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in objects:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    assert set(by_kind["Service"]) == {f"streamdx-{s}" for s in API_SERVICES}
    for service in API_SERVICES:
        svc = by_kind["Service"][f"streamdx-{service}"]
        assert svc["spec"]["type"] == "ClusterIP", service
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": f"streamdx-{service}"}, service
        (port,) = svc["spec"]["ports"]
        assert port["port"] == PORTS[service], service
        (container,) = by_kind["Deployment"][f"streamdx-{service}"]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[port["targetPort"]] == PORTS[service], f"{service}: Service targetPort"
    hpa = by_kind["HorizontalPodAutoscaler"]["streamdx-ingest"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "streamdx-ingest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in by_kind["Deployment"]["streamdx-ingest"]["spec"], "the HPA owns ingest replicas"
    assert set(by_kind["PodDisruptionBudget"]) == {f"streamdx-{s}" for s in SERVICES}
    for name, pdb in by_kind["PodDisruptionBudget"].items():
        assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}, name
        assert pdb["spec"].get("maxUnavailable") == 1, f"{name}: single-replica overlays must still drain"
    assert "Namespace" not in by_kind and all("namespace" not in d["metadata"] for d in objects)


def test_keda_scaled_objects_target_the_workers() -> None:
    docs = [doc for _, doc in _k8s_objects(K8S / "components" / "keda")]
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in docs}
    assert set(scaled) == KEDA_TARGETS
    assert {doc["metadata"]["name"] for doc in docs} == set(scaled)
    for doc in scaled.values():
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP"
            assert trigger["metadata"]["consumerGroup"] and trigger["metadata"]["topic"]
    pairs = [(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for doc in docs for t in doc["spec"]["triggers"]]
    assert len(pairs) == len(set(pairs)), "one trigger per (consumer group, topic) pair"
    triggers = _keda_triggers(docs)
    assert {group for _, group, _ in triggers} == set(GROUP_ENV.values())
    assert triggers == CONSUMERS
    component = _load(K8S / "components" / "keda" / "kustomization.yaml")[0]
    (patch,) = [p for p in component["patches"] if p["target"]["kind"] == "Deployment"]
    assert {f"streamdx-{x}" for x in _names(patch["target"]["name"])} == KEDA_TARGETS, "KEDA owns their replicas"


def test_keda_consumer_groups_are_the_workers_groups() -> None:
    """The groups the Deployments run (settings defaults, pinned in env) are the ones KEDA watches."""
    from streamdx.schemas import Topic

    topics = {t.value for t in Topic}
    deployments = _base_workloads("Deployment")
    for deployment, _group, topic in CONSUMERS:
        assert topic in topics, topic
        service = deployment.removeprefix("streamdx-")
        (container,) = deployments[deployment]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        pinned = {name: value for name, value in env.items() if name in GROUP_ENV}
        assert set(pinned.values()) == {g for d, g, _ in CONSUMERS if d == deployment}, deployment
        for name, value in pinned.items():
            assert value == GROUP_ENV[name] == _settings_default(service, name), f"{deployment}: {name}"
    compose = _compose_services()
    for name, value in GROUP_ENV.items():
        owners = [s for s, svc in compose.items() if name in svc.get("environment", {})]
        for owner in owners:
            assert compose[owner]["environment"][name] == value, f"compose {owner}: {name}"


def test_web_console_deployment() -> None:
    """The console: one replica (its evaluation runs live in the pod), pages and /healthz on
    WEB_PORT, the ingest and alerts APIs at their Services, a writable runs dir on a read-only
    root fs, no Kafka consumer group (it follows topics without one) so no KEDA, no /metrics."""
    deployment = _base_workloads("Deployment")["streamdx-web"]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WEB_HOST"] == "0.0.0.0", "the console binds 127.0.0.1 unless told otherwise"
    assert int(env["WEB_PORT"]) == PORTS["web"] == _settings_default("web", "WEB_PORT")
    assert env["WEB_COOKIE_SECURE"] == "true", "Secure session cookies: TLS in front (README)"
    assert env["INGEST_URL"] == f"http://streamdx-ingest:{PORTS['ingest']}"
    assert env["ALERTS_URL"] == f"http://streamdx-alerts:{PORTS['alerts']}"
    assert not set(env) & set(GROUP_ENV), "the console runs no consumer group"
    # writable paths: /tmp and the runs dir are emptyDirs (readOnlyRootFilesystem)
    assert env["WEB_RUNS_DIR"] == WEB_RUNS_DIR
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    runs = mounts[WEB_RUNS_DIR]
    assert not runs.get("readOnly") and "emptyDir" in volumes[runs["name"]], "WEB_RUNS_DIR must be writable"
    assert runs["name"] != mounts["/tmp"]["name"]
    data_root = env["WEB_DATA_ROOT"]
    assert data_root.startswith("/"), "relative to WORKDIR /tmp otherwise"
    if data_root in mounts:  # an overlay may mount datasets there: read, never written
        assert mounts[data_root].get("readOnly") is True, data_root
    assert "streamdx-web" not in KEDA_TARGETS and not any(d == "streamdx-web" for d, _, _ in CONSUMERS)
    # docker compose: its own image, loopback port, a volume for the runs, after ingest and alerts
    compose = _compose_services()
    svc = compose["web"]
    assert svc["build"]["args"]["SERVICE"] == "web"
    shared = compose["ingest"]["image"]
    assert svc["image"] != shared and "streamdx-web" in svc["image"], "two stages must not share one tag"
    cenv = svc["environment"]
    assert (cenv["WEB_HOST"], int(cenv["WEB_PORT"]), cenv["WEB_COOKIE_SECURE"]) == ("0.0.0.0", PORTS["web"], "true")
    assert cenv["INGEST_URL"] == f"http://ingest:{PORTS['ingest']}"
    assert cenv["ALERTS_URL"] == f"http://alerts:{PORTS['alerts']}"
    assert cenv["WEB_RUNS_DIR"] == WEB_RUNS_DIR
    named = set(_load(ROOT / "docker-compose.yml")[0]["volumes"])
    (runs_volume,) = [v for v in svc["volumes"] if v.split(":")[1] == WEB_RUNS_DIR]
    assert runs_volume.split(":")[0] in named and not runs_volume.endswith(":ro"), runs_volume
    for dependency in ("ingest", "alerts"):
        assert svc["depends_on"][dependency]["condition"] == "service_healthy", dependency
    # the image: the runs dir exists, owned by 10001 (a named volume starts with its owner)
    stage = _dockerfile_stages()["service-web"]
    assert _dockerfile_env(stage)["WEB_RUNS_DIR"] == WEB_RUNS_DIR
    assert any(re.search(rf"install -d -o 10001 -g 10001 .*{re.escape(WEB_RUNS_DIR)}", i) for i in stage)


def test_dockerfile_web_stage_has_weasyprint_libraries() -> None:
    """WeasyPrint dlopens Pango/HarfBuzz/fontconfig and needs a font: apt in the web stage only,
    without recommends, lists removed, checked by importing it, then back to UID 10001."""
    stages = _dockerfile_stages()
    stage = stages["service-web"]
    (apt,) = [i for i in stage if "apt-get install" in i]
    assert "--no-install-recommends" in apt and "rm -rf /var/lib/apt/lists/*" in apt
    installed = set(re.findall(r"\b(?:lib[\w.+-]+|fontconfig|fonts-[\w-]+)", apt.split("apt-get install", 1)[1]))
    assert installed >= WEASYPRINT_PACKAGES, sorted(WEASYPRINT_PACKAGES - installed)
    assert "import weasyprint" in apt, "the build fails when a library is missing"
    for name, instructions in stages.items():
        if name != "service-web":
            assert not any("apt-get" in i for i in instructions), f"{name}: system packages only in service-web"


def test_dockerfile_service_stages_run_as_10001() -> None:
    """A stage that switches to root (apt) must switch back: every service image runs as 10001."""
    stages = _dockerfile_stages()
    runtime_users = [i.split()[1] for i in stages["runtime"] if i.split()[0].upper() == "USER"]
    assert runtime_users[-1] == "10001:10001"
    for service in SERVICES:
        users = [i.split()[1] for i in stages[f"service-{service}"] if i.split()[0].upper() == "USER"]
        assert (users or runtime_users)[-1] == "10001:10001", f"service-{service} ends as {users[-1]}"


def test_jetson_overlay_targets_gpu_arm64() -> None:
    patch = _load(K8S / "overlays" / "jetson" / "patches" / "inference-jetson.yaml")[0]
    pod = patch["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ONNX_PROVIDERS"] == "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider"
    assert env["ECG_MODELS_INT8"] == "true"  # the INT8 QDQ ECG models (TensorRT INT8 engines)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_jetson_overlay_runs_dsp_beside_inference_on_the_edge_node() -> None:
    kustomization = _load(K8S / "overlays" / "jetson" / "kustomization.yaml")[0]
    assert {"path": "patches/dsp-edge.yaml"} in kustomization["patches"]
    (patch,) = _load(K8S / "overlays" / "jetson" / "patches" / "dsp-edge.yaml")
    assert patch["metadata"]["name"] == "streamdx-dsp"
    pod = patch["spec"]["template"]["spec"]
    inference = _load(K8S / "overlays" / "jetson" / "patches" / "inference-jetson.yaml")[0]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == inference["nodeSelector"] and pod["tolerations"] == inference["tolerations"]
    assert "runtimeClassName" not in pod  # no GPU for the DSP


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
        placeholders = {"streamdx", *IMAGES.values()}
        assert image not in placeholders and ":" in image, f"{name}: overlay must pin the image, got {image}"
        if name == "streamdx-web":
            assert image.split(":")[0].endswith("streamdx-web"), f"{name}: runs the web image, got {image}"
            assert d["spec"]["replicas"] == 1, "evaluation runs live in one pod"
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0].get("env", []) if "valueFrom" in e]
        assert all(r == secret for r in refs), f"{name}: {refs} != generated {secret}"
    job = next(d for d in docs if d["kind"] == "Job")
    _assert_hardened_pod(job["metadata"]["name"], job["spec"]["template"]["spec"], probes=False)
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("streamdx-config")]
    assert config["data"]["TOPIC_REPLICATION"] == TOPIC_REPLICATION[overlay]
    existing = _existing_services()
    for d in docs:
        if d["kind"] in {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}:
            assert d["metadata"]["name"].removeprefix("streamdx-") in existing, d["metadata"]["name"]
    if overlay == "prod":
        scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"}
        assert scaled == KEDA_TARGETS
        assert _keda_triggers(docs) == CONSUMERS
        for target in scaled:
            assert "replicas" not in deployments[target]["spec"], f"{target}: KEDA owns the replica count"
    else:
        assert not any(d["kind"] == "ScaledObject" for d in docs)


# ---------------------------------------------------------------------------- compose


def test_compose_services_hardened_and_ordered() -> None:
    compose = _load(ROOT / "docker-compose.yml")[0]
    services = compose["services"]
    assert {"kafka", "redis", "topics-init", "prometheus", "grafana", *SERVICES} <= set(services)
    assert _compose_served(services) == {s: s for s in SERVICES}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["topics-init"]["entrypoint"] == ["streamdx", "topics", "create"]
    assert services["ingest"]["environment"]["INGEST_HOST"] == "0.0.0.0"
    assert services["alerts"]["ports"] == ["127.0.0.1:8001:8001"], "the alerts API is published on loopback only"
    assert services["web"]["ports"] == ["127.0.0.1:8080:8080"], "the console is published on loopback only"
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
        assert f"{READY_PATH.get(name, '/readyz')}'" in " ".join(svc["healthcheck"]["test"]), f"{name}: health path"
        depends = svc["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["topics-init"]["condition"] == "service_completed_successfully"
    # secrets: only interpolated from the git-ignored .env, only into the service that uses them
    readers = {**SECRET_READERS, "GF_SECURITY_ADMIN_PASSWORD": {"grafana"}}
    for name, svc in services.items():
        env = svc.get("environment", {})
        assert "env_file" not in svc, f"{name}: pass secrets one by one, not a whole env file"
        for secret, owners in readers.items():
            if name in owners:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", env[secret]), f"{name}: {secret} must be ${{VAR:?}}"
            else:
                assert secret not in env, f"{name} must not receive {secret}"
    for infra in ("kafka", "redis"):
        assert services[infra]["healthcheck"]["test"]


def test_env_example_documents_the_secrets() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=change-me$", text, re.M))
    assert documented == {*SECRETS, "GRAFANA_ADMIN_PASSWORD"}
    compose = (ROOT / "docker-compose.yml").read_text()
    for secret in documented:
        assert f"${{{secret}:?" in compose, f"{secret} is documented but docker-compose.yml does not use it"
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
    assert set(re.findall(r"^FROM runtime AS service-(\S+)", text, re.M)) == set(SERVICES)
    assert re.search(r"^FROM service-\$\{SERVICE\}", text, re.M)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in ignore and "!shared/" in ignore and "!services/" in ignore and "!models/" in ignore


def test_dockerfile_runtime_stage_contains_the_models() -> None:
    """The inference service loads ONNX models from MODELS_DIR; the wheel does not contain them."""
    assert (ROOT / "models" / "esr_gru" / "esr_gru.json").is_file()
    assert list((ROOT / "models" / "esr_gru").glob("model_T*.onnx"))
    stages = _dockerfile_stages()
    runtime = stages["runtime"]
    assert _dockerfile_env(runtime).get("MODELS_DIR") == MODELS_DIR
    for name, instructions in stages.items():
        assert _dockerfile_env(instructions).get("MODELS_DIR", MODELS_DIR) == MODELS_DIR, f"{name} overrides it"
    copies = [i.split()[1:] for i in runtime if i.split()[0].upper() == "COPY"]
    (args,) = [a for a in copies if a[-1].rstrip("/") == MODELS_DIR]
    flags = [a for a in args[:-1] if a.startswith("--")]
    (source,) = [a for a in args[:-1] if not a.startswith("--")]
    assert not [f for f in flags if f.startswith("--chown")], "models stay owned by root, read-only for 10001"
    for chmod in [f.split("=", 1)[1] for f in flags if f.startswith("--chmod=")]:
        assert int(chmod, 8) & 0o022 == 0, "models must not be writable by group/other"
    from_stage = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
    if from_stage:  # staged through an earlier stage: it must take them from the build context
        workdir, copied = "/", set()
        for instruction in stages[from_stage[0]]:
            parts = instruction.split()
            if parts[0].upper() == "WORKDIR":
                workdir = str(Path(workdir, parts[1]))
            elif parts[0].upper() == "COPY" and parts[1].rstrip("/") == "models":
                copied.add(str(Path(workdir, parts[-1])))
        assert str(Path(source)) in copied, f"stage {from_stage[0]} does not COPY models to {source}"
    else:
        assert source.rstrip("/") == "models"
    assert runtime.index(" ".join(["COPY", *args])) < next(i for i, x in enumerate(runtime) if x.startswith("USER "))


def _service_references() -> list[tuple[str, str]]:
    """(where, X) for every service a deployment file names: ``streamdx serve X``, compose
    services run from the repo image, Dockerfile service stages, k8s objects and kustomize
    targets named ``streamdx-X``, container names/args, Prometheus jobs."""
    refs: list[tuple[str, str]] = []
    texts = [ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / ".env.example"]
    texts += [p for p in DEPLOY.rglob("*") if p.is_file()]
    for path in texts:
        refs += [(_rel(path), x) for x in re.findall(r"streamdx serve ([a-z][a-z0-9_-]*)", path.read_text())]
    # compose
    for name, served in _compose_served(_compose_services()).items():
        refs += [("docker-compose.yml", name), ("docker-compose.yml", served)]
    # Dockerfile
    dockerfile = (ROOT / "Dockerfile").read_text()
    refs += [("Dockerfile", x) for x in re.findall(r"^FROM runtime AS service-(\S+)", dockerfile, re.M)]
    refs += [("Dockerfile", x) for x in re.findall(r'^CMD \["([^"]+)"\]', dockerfile, re.M)]
    refs += [("Dockerfile", x) for x in re.findall(r"SERVICE=([a-z0-9_-]+)", dockerfile)]
    # Kubernetes objects and patches
    named = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}
    for path, doc in _k8s_objects(K8S):
        where = _rel(path)
        if doc["kind"] in named:
            refs += [(where, x) for x in _names(doc["metadata"]["name"])]
        target = doc.get("spec", {}).get("scaleTargetRef", {}).get("name")
        if target:
            refs += [(where, x) for x in _names(target)]
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"].get("containers", []):
                refs.append((where, c["name"]))
                if "command" not in c and c.get("args"):  # ENTRYPOINT is `streamdx serve`
                    refs.append((where, c["args"][0]))
    for path in KUSTOMIZATIONS:
        kustomization = _load(path)[0]
        names = [r["name"] for r in kustomization.get("replicas", [])]
        names += [p["target"]["name"] for p in kustomization.get("patches", []) if "name" in p.get("target", {})]
        refs += [(_rel(path), x) for name in names for x in _names(name)]
    # Prometheus
    for job in _load(DEPLOY / "prometheus" / "prometheus.yml")[0]["scrape_configs"]:
        if job["job_name"].startswith("streamdx-"):
            refs.append(("deploy/prometheus/prometheus.yml", job["job_name"].removeprefix("streamdx-")))
            for sc in job["static_configs"]:
                refs += [("deploy/prometheus/prometheus.yml", t.split(":")[0]) for t in sc["targets"]]
    return refs


def test_no_deployment_of_a_service_that_does_not_exist() -> None:
    existing = _existing_services()
    assert existing, "no services/*/streamdx_*/main.py"
    from streamdx.cli import COMMANDS

    servable = {name for group, name in COMMANDS if group == "serve"}
    refs = _service_references()
    sources = {where for where, _ in refs}
    for expected in ("Dockerfile", "docker-compose.yml", "deploy/prometheus/prometheus.yml"):
        assert expected in sources, f"the scan found no service in {expected}"
    assert any(w.startswith("deploy/k8s/base/") for w in sources)
    assert any(w.startswith("deploy/k8s/components/keda/") for w in sources)
    bad = sorted({(where, x) for where, x in refs if x not in existing})
    assert not bad, f"deployed but no services/*/streamdx_<X>/main.py: {bad}"
    not_servable = sorted({(where, x) for where, x in refs if x not in servable})
    assert not not_servable, f"`streamdx serve X` is not a command: {not_servable}"


def test_every_existing_service_is_deployed() -> None:
    assert set(SERVICES) == _existing_services(), "deploy (or stop deploying) services/*/streamdx_<X>/main.py"


def test_manifests_set_only_env_the_services_read() -> None:
    shared = _settings_env(None)
    own = {s: _settings_env(s) for s in SERVICES}
    every = set().union(shared, *own.values())
    problems: list[str] = []

    def check(where: str, names: Any, allowed: set[str]) -> None:
        problems.extend(f"{where}: {n}" for n in sorted(set(names) - allowed))

    # docker compose (topics-init runs `streamdx topics create`, which reads the shared settings)
    compose = _load(ROOT / "docker-compose.yml")[0]
    services = compose["services"]
    check("compose x-streamdx-service", compose["x-streamdx-service"]["environment"], shared)
    check("compose topics-init", services["topics-init"]["environment"], shared)
    for name, served in _compose_served(services).items():
        check(f"compose {name}", services[name]["environment"], own.get(served, set()) | CONTAINER_ONLY_ENV)
    # Kubernetes: the ConfigMap reaches every pod (envFrom), container env only its own service
    for path in KUSTOMIZATIONS:
        check(_rel(path), _config_literals(path.parent), shared)
    for path, doc in _k8s_objects(K8S):
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        for c in doc["spec"]["template"]["spec"].get("containers", []):
            allowed = own.get(c["name"], set()) if doc["kind"] == "Deployment" else shared
            check(f"{_rel(path)} {c['name']}", [e["name"] for e in c.get("env", [])], allowed)
    # Dockerfile: the runtime stage is shared by every image, a service stage by one
    stages = _dockerfile_stages()
    check("Dockerfile runtime", _dockerfile_env(stages["runtime"]), every | CONTAINER_ONLY_ENV | IMAGE_ONLY_ENV)
    for service in SERVICES:
        check(
            f"Dockerfile service-{service}",
            _dockerfile_env(stages[f"service-{service}"]),
            own[service] | CONTAINER_ONLY_ENV,
        )
    assert not problems, f"environment variables no service reads: {problems}"


def test_topic_replication_per_environment() -> None:
    base = _config_literals(K8S / "base")
    assert base["TOPIC_REPLICATION"] == "1"
    for overlay, replication in TOPIC_REPLICATION.items():
        merged = {**base, **_config_literals(K8S / "overlays" / overlay)}
        assert merged["TOPIC_REPLICATION"] == replication, overlay
        assert int(merged["TOPIC_PARTITIONS"]) >= 1
    (container,) = _base_workloads("Job")["streamdx-topics-create"]["spec"]["template"]["spec"]["containers"]
    assert {"configMapRef": {"name": "streamdx-config"}} in container["envFrom"], "the Job reads streamdx-config"
    assert _compose_services()["topics-init"]["environment"]["TOPIC_REPLICATION"] == "1", "one compose broker"
