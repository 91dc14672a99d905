"""Prometheus metrics of the platform: one class per service, created on an injected registry.

Each service builds its own metrics object on its own ``CollectorRegistry`` and passes it to
the components that count things, so its ``/metrics`` exposes only the families it updates:

* :class:`PublisherMetrics` — anything that publishes to Kafka (``produced``);
* :class:`WorkerMetrics` — a stream-worker service: publishing plus consuming, dead letters,
  redeliveries, batch time and consumer lag;
* :class:`IngestMetrics`, :class:`DspMetrics`, :class:`InferenceMetrics` — one per service,
  adding the service's own families.

No family has a per-stream (``stream_id``, device) label: per-stream views come from the
services' APIs, not from Prometheus (cardinality). Tests use a fresh registry each.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "SERVICE_METRICS",
    "DspMetrics",
    "InferenceMetrics",
    "IngestMetrics",
    "PublisherMetrics",
    "WorkerMetrics",
    "render_metrics",
]

_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class PublisherMetrics:
    """Families of a process that publishes messages."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.produced = Counter("streamdx_messages_produced", "Messages produced", ["topic"], registry=registry)


class WorkerMetrics(PublisherMetrics):
    """Families of a stream-worker service (``streamdx.messaging.StreamWorker``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumed = Counter(
            "streamdx_messages_consumed", "Messages consumed", ["topic", "group"], registry=registry
        )
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
            ["group"], registry=registry, buckets=_SECONDS_BUCKETS,
        )
        self.consumer_lag = Gauge(
            "streamdx_consumer_lag", "Consumer lag (messages)", ["topic", "partition", "group"],
            registry=registry,
        )


class IngestMetrics(PublisherMetrics):
    """The ingest service: HTTP requests and what happened to the devices' chunks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.http_requests = Counter(
            "streamdx_http_requests", "HTTP requests by route template and status", ["route", "status"],
            registry=registry,
        )
        self.ingest_chunks = Counter(
            "streamdx_ingest_chunks", "ECG chunks received by ingest, by outcome", ["status"], registry=registry
        )
        self.ingest_samples = Counter(
            "streamdx_ingest_samples", "ECG samples published by ingest", registry=registry
        )
        self.ingest_gaps = Counter(
            "streamdx_ingest_gaps", "Sequence gaps detected by ingest (chunks missing)", registry=registry
        )
        self.ingest_clock_drift = Histogram(
            "streamdx_ingest_clock_drift_seconds",
            "|t0 - (previous t0 + previous n / fs)| between consecutive chunks of a device stream",
            registry=registry, buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300),
        )


class DspMetrics(WorkerMetrics):
    """The dsp service: beats found."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.beats = Counter("streamdx_beats", "Beats emitted by dsp", registry=registry)


class InferenceMetrics(WorkerMetrics):
    """The inference service: beat labels by AAMI class (``unreadable`` for the quality gate)
    and the time of each batched model call."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.labels = Counter(
            "streamdx_labels", "Beat labels emitted, by AAMI class or 'unreadable'", ["aami_class"],
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "streamdx_inference_seconds", "Time of one batched model call (features + models)", ["model"],
            registry=registry, buckets=_SECONDS_BUCKETS,
        )


#: service name → its metrics class (what ``/metrics`` of that service exports).
SERVICE_METRICS: dict[str, type[PublisherMetrics]] = {
    "ingest": IngestMetrics,
    "dsp": DspMetrics,
    "inference": InferenceMetrics,
}


def render_metrics(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
