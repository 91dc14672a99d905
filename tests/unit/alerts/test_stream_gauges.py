"""The per-stream HR / AF-burden gauges stay bounded: at most N streams, idle streams dropped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streamdx.metrics import AlertsMetrics
from streamdx_alerts.handlers import GAUGE_IDLE_S, StreamGauges


def _series(m: AlertsMetrics) -> set[str]:
    return {s.labels["stream_id"] for f in m.stream_heart_rate.collect() for s in f.samples}


def test_at_most_max_streams_least_recent_evicted() -> None:
    m = AlertsMetrics(CollectorRegistry())
    g = StreamGauges(m, max_streams=3)
    for i in range(5):
        g.set(f"s{i}", 60.0 + i, 0.1, now=1000.0 + i)
    assert _series(m) == {"s2", "s3", "s4"} and len(g) == 3
    g.set("s2", 70.0, None, now=1010.0)  # touched: now the most recent
    g.set("s5", 70.0, None, now=1011.0)
    assert _series(m) == {"s2", "s4", "s5"}
    assert m.registry.get_sample_value("streamdx_stream_heart_rate_bpm", {"stream_id": "s2"}) == 70.0
    assert m.registry.get_sample_value("streamdx_stream_af_burden_ratio", {"stream_id": "s4"}) == 0.1


def test_idle_streams_removed_and_zero_disables() -> None:
    m = AlertsMetrics(CollectorRegistry())
    g = StreamGauges(m, max_streams=10)
    g.set("old", 60.0, 0.0, now=0.0)
    g.set("new", 61.0, 0.0, now=GAUGE_IDLE_S + 1.0)
    assert _series(m) == {"new"}
    g.remove("new")
    assert _series(m) == set()
    off = AlertsMetrics(CollectorRegistry())
    StreamGauges(off, max_streams=0).set("x", 60.0, 0.5)
    assert _series(off) == set()
