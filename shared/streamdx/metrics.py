"""Prometheus metrics of the platform, created on an injected registry.

Each service builds one :class:`Metrics` on its own ``CollectorRegistry`` and passes it to
the components that count things; tests use a fresh registry each.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "render_metrics"]


class Metrics:
    """All metric families (names are what the Grafana dashboard queries)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.ingest_chunks = Counter(
            "streamdx_ingest_chunks", "ECG chunks received by ingest", ["status"], registry=registry
        )
        self.ingest_samples = Counter(
            "streamdx_ingest_samples", "ECG samples published by ingest", registry=registry
        )
        self.ingest_gaps = Counter(
            "streamdx_ingest_gaps", "Sequence gaps detected by ingest (chunks missing)", registry=registry
        )
        self.http_requests = Counter(
            "streamdx_http_requests", "HTTP requests", ["route", "status"], registry=registry
        )
        self.consumed = Counter(
            "streamdx_messages_consumed", "Messages consumed", ["topic", "group"], registry=registry
        )
        self.produced = Counter("streamdx_messages_produced", "Messages produced", ["topic"], registry=registry)
        self.dlq = Counter(
            "streamdx_dlq_messages", "Messages sent to a dead-letter topic", ["topic", "reason"],
            registry=registry,
        )
        self.skipped_replays = Counter(
            "streamdx_replayed_messages_skipped", "Messages skipped as already applied (redelivery)",
            ["topic", "group"], registry=registry,
        )
        self.batch_seconds = Histogram(
            "streamdx_batch_seconds", "Time to process, publish, checkpoint and commit one batch",
            ["group"], registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.consumer_lag = Gauge(
            "streamdx_consumer_lag", "Consumer lag (messages)", ["topic", "partition", "group"],
            registry=registry,
        )
        self.beats = Counter("streamdx_beats", "Beats emitted by dsp", registry=registry)
        self.labels = Counter("streamdx_labels", "Beat labels emitted", ["aami_class"], registry=registry)
        self.alerts = Counter("streamdx_alerts", "Alert events", ["kind", "state"], registry=registry)


def render_metrics(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
