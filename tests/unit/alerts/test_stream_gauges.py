"""The per-stream HR / AF-burden gauges stay bounded: at most N streams (the first ones, kept until
idle: no churn), idle streams dropped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streamdx.metrics import AlertsMetrics
from streamdx_alerts.handlers import GAUGE_IDLE_S, StreamGauges


def _series(m: AlertsMetrics) -> set[str]:
    return {s.labels["stream_id"] for f in m.stream_heart_rate.collect() for s in f.samples}


def test_at_most_max_streams_first_come_kept_until_idle() -> None:
    m = AlertsMetrics(CollectorRegistry())
    g = StreamGauges(m, max_streams=3)
    for i in range(5):
        g.set(f"s{i}", 60.0 + i, 0.1, now=1000.0 + i)
    assert _series(m) == {"s0", "s1", "s2"} and len(g) == 3  # stable series: no churn between scrapes
    g.set("s0", 70.0, None, now=1000.0 + GAUGE_IDLE_S)  # s0 stays; s1 and s2 are not idle yet
    g.set("s5", 70.0, None, now=1000.0 + GAUGE_IDLE_S)
    assert _series(m) == {"s0", "s1", "s2"}
    assert m.registry.get_sample_value("streamdx_stream_heart_rate_bpm", {"stream_id": "s0"}) == 70.0
    assert m.registry.get_sample_value("streamdx_stream_af_burden_ratio", {"stream_id": "s0"}) == 0.1
    g.set("s5", 72.0, 0.3, now=1002.0 + GAUGE_IDLE_S + 0.5)  # s1 and s2 idle: their places are free
    assert _series(m) == {"s0", "s5"}
    assert m.registry.get_sample_value("streamdx_stream_af_burden_ratio", {"stream_id": "s5"}) == 0.3


def test_a_stream_without_a_value_gets_no_series() -> None:
    m = AlertsMetrics(CollectorRegistry())
    g = StreamGauges(m, max_streams=3)
    g.set("quiet", None, None, now=0.0)
    g.set("hr-only", 61.0, None, now=0.0)
    assert _series(m) == {"hr-only"}
    assert m.registry.get_sample_value("streamdx_stream_af_burden_ratio", {"stream_id": "hr-only"}) is None
    g.remove("quiet")
    g.remove("hr-only")
    assert _series(m) == set() and len(g) == 0


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
