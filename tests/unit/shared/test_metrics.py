"""Each service exports only its own metric families; every dashboard query names a family that
some service exports and that non-test code updates; no family has a per-stream label."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from streamdx.metrics import SERVICE_METRICS, DspMetrics, InferenceMetrics, IngestMetrics, PublisherMetrics
from streamdx.worker_service import health_app

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
SOURCES = [p for d in ("shared", "services") for p in (ROOT / d).rglob("*.py") if p.name != "metrics.py"]
METRIC_NAME = re.compile(r"\bstreamdx_[a-z0-9_]+\b")
SUFFIXES = {Counter: ("_total",), Gauge: ("",), Histogram: ("_bucket", "_count", "_sum")}
PER_STREAM_LABELS = {"stream_id", "stream", "device", "device_id", "tube_id", "slide_id", "recording_id"}


def _collectors(metrics: PublisherMetrics) -> dict[str, MetricWrapperBase]:
    """attribute name → metric family of a service's metrics object."""
    return {name: value for name, value in vars(metrics).items() if isinstance(value, MetricWrapperBase)}


def _exposed(collector: MetricWrapperBase) -> set[str]:
    base = collector._name  # prometheus_client keeps the name without the _total suffix
    suffixes = next(s for cls, s in SUFFIXES.items() if isinstance(collector, cls))
    return {base + s for s in suffixes}


def _exported_by_service() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for service, cls in SERVICE_METRICS.items():
        out[service] = set().union(*(_exposed(c) for c in _collectors(cls(CollectorRegistry())).values()))
    return out


def _updated_attributes() -> set[str]:
    """Metric attributes that non-test code increments, observes or sets (``x.<attr>.inc(`` …)."""
    pattern = re.compile(r"\.(\w+)\s*\.\s*(?:labels\s*\(|inc\s*\(|observe\s*\(|set\s*\(|dec\s*\()")
    found: set[str] = set()
    for path in SOURCES:
        found.update(pattern.findall(path.read_text()))
    return found


def _dashboard_metrics() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}

    def walk(panels: list[dict[str, object]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []) or []:  # type: ignore[union-attr]
                expr = str(target.get("expr", ""))  # type: ignore[union-attr]
                out.setdefault(str(panel.get("title")), set()).update(METRIC_NAME.findall(expr))
            walk(panel.get("panels", []) or [])  # type: ignore[arg-type]

    for path in DASHBOARDS:
        walk(json.loads(path.read_text()).get("panels", []))
    return out


def test_dashboards_exist_and_query_metrics() -> None:
    assert DASHBOARDS
    assert set().union(*_dashboard_metrics().values())


def test_every_dashboard_metric_is_exported_by_a_service() -> None:
    exported = set().union(*_exported_by_service().values())
    missing = {title: sorted(names - exported) for title, names in _dashboard_metrics().items() if names - exported}
    assert not missing, f"panels query metrics no service exports: {missing}"


def test_every_exported_family_is_updated_by_non_test_code() -> None:
    updated = _updated_attributes()
    dead = [
        f"{cls.__name__}.{attr} ({c._name})"
        for cls in SERVICE_METRICS.values()
        for attr, c in _collectors(cls(CollectorRegistry())).items()
        if attr not in updated
    ]
    assert not dead, f"exported but never incremented/observed/set outside metrics.py: {dead}"


#: The only per-stream families: the alerts service's live gauges, bounded by STREAM_GAUGES_MAX
#: (tests/unit/alerts/test_stream_gauges.py proves the bound).
BOUNDED_PER_STREAM = {("AlertsMetrics", "stream_heart_rate"), ("AlertsMetrics", "stream_af_burden")}


def test_no_family_has_a_per_stream_label() -> None:
    for cls in SERVICE_METRICS.values():
        for attr, c in _collectors(cls(CollectorRegistry())).items():
            if (cls.__name__, attr) in BOUNDED_PER_STREAM:
                assert set(c._labelnames) == {"stream_id"}
                continue
            assert not set(c._labelnames) & PER_STREAM_LABELS, f"{cls.__name__}.{attr}: {c._labelnames}"


def test_services_export_only_their_own_families() -> None:
    exported = _exported_by_service()
    assert "streamdx_beats_total" in exported["dsp"]
    assert "streamdx_labels_total" in exported["inference"]
    assert "streamdx_http_requests_total" in exported["ingest"]
    assert not exported["ingest"] & {"streamdx_beats_total", "streamdx_labels_total",
                                     "streamdx_messages_consumed_total", "streamdx_consumer_lag",
                                     "streamdx_batch_seconds_bucket"}
    assert not exported["dsp"] & {"streamdx_labels_total", "streamdx_http_requests_total",
                                  "streamdx_ingest_chunks_total"}
    assert not exported["inference"] & {"streamdx_beats_total", "streamdx_ingest_chunks_total"}


@pytest.mark.parametrize(("cls", "own", "foreign"), [
    (DspMetrics, "streamdx_beats_total", ["streamdx_labels_total", "streamdx_ingest_chunks_total",
                                          "streamdx_http_requests_total"]),
    (InferenceMetrics, "streamdx_labels_total", ["streamdx_beats_total", "streamdx_ingest_chunks_total"]),
])
async def test_worker_metrics_endpoint_serves_only_the_service_families(
    cls: type[PublisherMetrics], own: str, foreign: list[str]
) -> None:
    metrics = cls(CollectorRegistry())
    for c in _collectors(metrics).values():  # one child each, so every family shows samples
        child = c.labels(*["x"] * len(c._labelnames)) if c._labelnames else c
        child.observe(0.1) if isinstance(child, Histogram) else child.inc()  # type: ignore[union-attr]
    app = health_app([], [], metrics.registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        text = (await client.get("/metrics")).text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert own in names and "streamdx_messages_consumed_total" in names
    assert not names & set(foreign), names & set(foreign)
    assert not any(n.startswith(("streamdx_ingest_", "streamdx_http_")) for n in names)


def test_ingest_metrics_has_no_worker_families() -> None:
    names = set(_collectors(IngestMetrics(CollectorRegistry())))
    assert {"http_requests", "ingest_chunks", "ingest_clock_drift", "produced"} <= names
    assert not names & {"consumed", "dlq", "consumer_lag", "batch_seconds", "beats", "labels"}
