"""Prometheus metrics of the platform: one class per service, created on an injected registry.

Each service builds its own metrics object on its own ``CollectorRegistry`` and passes it to
the components that count things, so its ``/metrics`` exposes only the families it updates:

* :class:`PublisherMetrics` — anything that publishes to Kafka (``produced``);
* :class:`WorkerMetrics` — a stream-worker service: publishing plus consuming, dead letters,
  redeliveries, batch time and consumer lag;
* :class:`IngestMetrics`, :class:`DspMetrics`, :class:`InferenceMetrics`,
  :class:`AlertsMetrics` — one per service, adding the service's own families.

Only two families have a per-stream label, both in :class:`AlertsMetrics` (the live HR and
AF-burden gauges the operators' dashboard plots per stream): the alerts service exports them
for at most ``STREAM_GAUGES_MAX`` streams and removes a stream's series when it ends or goes
quiet, so cardinality stays bounded. Stream ids are opaque device-lead ids, never patient
identifiers. Every other per-stream view comes from the services' APIs. Tests use a fresh
registry each.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "SERVICE_METRICS",
    "AlertsMetrics",
    "DspMetrics",
    "InferenceMetrics",
    "IngestMetrics",
    "PublisherMetrics",
    "WorkerMetrics",
    "render_metrics",
]

_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class PublisherMetrics:
    """Families of a process that publishes messages (every service process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.produced = Counter("streamdx_messages_produced", "Messages produced", ["topic"], registry=registry)
        self.gc_pause = Histogram(
            "streamdx_gc_pause_seconds", "Duration of each pass of the cyclic garbage collector (the process pauses)",
            ["generation"], registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )  # fmt: skip


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


class AlertsMetrics(WorkerMetrics):
    """The alerts service: alert events, webhook deliveries and the live per-stream gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.alert_events = Counter(
            "streamdx_alert_events", "Alert events emitted, by kind, severity and state", ["kind", "severity", "state"],
            registry=registry,
        )
        self.alerts_open = Gauge(
            "streamdx_alerts_open", "Alerts currently raised and not resolved, by kind and severity",
            ["kind", "severity"], registry=registry,
        )
        self.alert_delay_seconds = Histogram(
            "streamdx_alert_delay_seconds",
            "Wall time from the publication of the message that met an alarm criterion to the alert event",
            ["kind"], registry=registry, buckets=_SECONDS_BUCKETS,
        )
        self.webhook_deliveries = Counter(
            "streamdx_webhook_deliveries", "Webhook delivery attempts by outcome "
            "(delivered, retry, dead_letter, circuit_open, rejected)", ["outcome"], registry=registry,
        )
        self.webhook_seconds = Histogram(
            "streamdx_webhook_seconds", "Duration of one webhook POST", registry=registry, buckets=_SECONDS_BUCKETS,
        )
        self.webhook_pending = Gauge(
            "streamdx_webhook_pending", "Webhook deliveries waiting for an attempt or a retry", registry=registry,
        )
        self.webhook_event_to_post_seconds = Histogram(
            "streamdx_webhook_event_to_post_seconds",
            "Wall time from an alert event's emission to the webhook POST that delivered it",
            registry=registry, buckets=_SECONDS_BUCKETS,
        )
        self.stream_heart_rate = Gauge(
            "streamdx_stream_heart_rate_bpm", "Heart rate averaged over the last beats, per stream (bounded set)",
            ["stream_id"], registry=registry,
        )
        self.stream_af_burden = Gauge(
            "streamdx_stream_af_burden_ratio", "AF burden over the rolling window (0..1), per stream (bounded set)",
            ["stream_id"], registry=registry,
        )


#: service name → its metrics class (what ``/metrics`` of that service exports).
SERVICE_METRICS: dict[str, type[PublisherMetrics]] = {
    "ingest": IngestMetrics,
    "dsp": DspMetrics,
    "inference": InferenceMetrics,
    "alerts": AlertsMetrics,
}


def render_metrics(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
