"""The alerts service's stream handlers: labels, signal status and ESR forecasts → ``alerts.events``.

Thin adapters around the pure engines in :mod:`streamdx_alerts.engine`:

* :class:`RhythmHandler` (batch mode, ``ecg.labels``): every stream's new labels of a batch
  through :func:`~streamdx_alerts.engine.rhythm.rhythm_step`; also sets the bounded
  per-stream HR and AF-burden gauges;
* :class:`StatusHandler` (batch mode, ``ecg.status``): the technical engine, and the wall
  time each stream was last heard of (Redis sorted set, for the no-data watchdog; while Redis
  is unavailable the batch waits for it rather than dead-lettering good statuses);
* :class:`EsrHandler` (per record, ``esr.forecasts``): the ESR threshold rule.

Each keeps its engine's state per key through the worker's checkpoints (JSON codecs below),
so a replacement worker resumes without repeating or losing an alert; events carry
``alert_id:seq`` as idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic_core import to_json
from redis.asyncio import Redis

from streamdx.messaging.worker import Handled, KeyBatch
from streamdx.metrics import AlertsMetrics
from streamdx.schemas import AlertEventV1, EcgLabelV1, EcgStatusV1, EsrForecastV1
from streamdx_alerts.engine.esr import EsrObs, EsrState, esr_step
from streamdx_alerts.engine.lifecycle import AlertChange
from streamdx_alerts.engine.rhythm import RhythmBeat, RhythmState, rhythm_step
from streamdx_alerts.engine.technical import StatusObs, TechnicalState, technical_step
from streamdx_alerts.redis_retry import until_redis_answers
from streamdx_alerts.rules import Profiles

__all__ = [
    "LAST_SEEN_KEY",
    "EsrHandler",
    "JsonStateCodec",
    "RhythmHandler",
    "StatusHandler",
    "StreamGauges",
    "alert_event",
    "beat_of",
    "status_of",
]

#: Redis sorted set: stream id → wall time (s) its last signal status was consumed.
LAST_SEEN_KEY = "streamdx:alerts:last_seen"
#: A stream's HR / AF-burden series are removed after this long without labels (s).
GAUGE_IDLE_S = 300.0


class _Serialisable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", RhythmState, TechnicalState, EsrState)


class JsonStateCodec(Generic[S]):
    """``{"v": 1, "state": ...}`` JSON checkpoints of one engine's state class."""

    VERSION = 1

    def __init__(self, cls: type[S]) -> None:
        self._cls: type[S] = cls

    def dumps(self, state: S) -> bytes:
        # pydantic-core's serialiser: the same JSON as ``json.dumps`` (NaN/Infinity as constants) at a
        # fraction of the cost (one checkpoint per stream per batch)
        return to_json({"v": self.VERSION, "state": state.to_dict()})

    def loads(self, blob: bytes) -> S:
        try:
            d = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self._cls.__name__} checkpoint is not JSON: {exc}") from exc
        if not isinstance(d, dict) or d.get("v") != self.VERSION or not isinstance(d.get("state"), dict):
            raise ValueError(f"{self._cls.__name__} checkpoint is not v{self.VERSION}")
        try:
            return self._cls.from_dict(d["state"])
        except (TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"{self._cls.__name__} checkpoint: {exc}") from exc


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def alert_event(stream_id: str, ch: AlertChange, now: float | None = None) -> AlertEventV1:
    """The ``alerts.events`` message of one engine change."""
    return AlertEventV1(
        alert_id=ch.alert_id, seq=ch.seq, stream_id=stream_id, kind=ch.kind, state=ch.state,  # type: ignore[arg-type]
        severity=ch.severity, technical=ch.technical, started_at=_dt(ch.started_at),  # type: ignore[arg-type]
        criterion_at=_dt(ch.criterion_at), ended_at=_dt(ch.ended_at) if ch.ended_at is not None else None,
        emitted_at=_dt(time.time() if now is None else now), rule=ch.rule, message=ch.message[:300],
        details=ch.details,
    )  # fmt: skip


def beat_of(m: EcgLabelV1) -> RhythmBeat:
    """The rhythm engine's view of one label."""
    return RhythmBeat(
        beat_index=m.beat_index, t=m.r_time.timestamp(), rr_prev_s=m.rr_prev_s, readable=m.quality == "ok",
        af=m.af, beat_class=m.beat_class, after_gap=m.after_gap, rr_prev_lost_s=m.rr_prev_lost_s,
    )


def status_of(m: EcgStatusV1) -> StatusObs:
    """The technical engine's view of one status message."""
    return StatusObs(
        seq=m.seq, fs=m.fs, t_end=m.t_end.timestamp(), end_sample=m.end_sample, horizon_sample=m.horizon_sample,
        last_r_sample=m.last_r_sample, lost=tuple((a, b) for a, b in m.lost), gap_s=m.gap_s, final=m.final,
        r_samples=tuple(m.r_samples),
    )


class _Counting:
    def __init__(self, metrics: AlertsMetrics) -> None:
        self._metrics = metrics

    def _count(self, events: Sequence[AlertEventV1]) -> None:
        now = time.time()
        for e in events:
            self._metrics.alert_events.labels(kind=e.kind, severity=e.severity, state=e.state).inc()
            if e.state == "raised":
                self._metrics.alerts_open.labels(kind=e.kind, severity=e.severity).inc()
                delay = now - e.criterion_at.timestamp()
                if 0.0 <= delay < 3600.0:  # live streams only (a replay's signal clock is in the past)
                    self._metrics.alert_delay_seconds.labels(kind=e.kind).observe(delay)
            elif e.state == "resolved":
                self._metrics.alerts_open.labels(kind=e.kind, severity=e.severity).dec()


@dataclass
class _StreamSeries:
    seen: float
    hr: Any = None  # the gauges' children, created at the stream's first value
    burden: Any = None


class StreamGauges:
    """The per-stream HR and AF-burden gauges, bounded to ``max_streams`` series each.

    Streams get series in the order they first send a value, up to ``max_streams``; a
    stream idle for ``GAUGE_IDLE_S`` loses its series and frees its place. Beyond the bound a
    new stream is not exported until a place is free: the exported series stay stable (no
    churn between scrapes, which Prometheus stores as ever new series) and an update costs
    a dictionary lookup.
    """

    def __init__(self, metrics: AlertsMetrics, max_streams: int) -> None:
        self._metrics = metrics
        self._max = max_streams
        self._seen: OrderedDict[str, _StreamSeries] = OrderedDict()  # least recently updated first

    def set(self, stream_id: str, hr: float | None, burden: float | None, now: float | None = None) -> None:
        if self._max <= 0:
            return
        now = time.time() if now is None else now
        while self._seen and now - next(iter(self._seen.values())).seen > GAUGE_IDLE_S:
            self.remove(next(iter(self._seen)))
        entry = self._seen.get(stream_id)
        if entry is None:
            if len(self._seen) >= self._max:
                return
            entry = self._seen[stream_id] = _StreamSeries(now)
        else:
            entry.seen = now
            self._seen.move_to_end(stream_id)
        if hr is not None:
            if entry.hr is None:
                entry.hr = self._metrics.stream_heart_rate.labels(stream_id=stream_id)
            entry.hr.set(hr)
        if burden is not None:
            if entry.burden is None:
                entry.burden = self._metrics.stream_af_burden.labels(stream_id=stream_id)
            entry.burden.set(burden)

    def remove(self, stream_id: str) -> None:
        entry = self._seen.pop(stream_id, None)
        if entry is None:
            return
        for g, child in ((self._metrics.stream_heart_rate, entry.hr), (self._metrics.stream_af_burden, entry.burden)):
            if child is not None:
                with contextlib.suppress(KeyError):
                    g.remove(stream_id)

    def __len__(self) -> int:
        return len(self._seen)


class RhythmHandler(_Counting):
    """Batch handler for ``ecg.labels`` (profiles, metrics and gauges injected)."""

    def __init__(self, profiles: Profiles, metrics: AlertsMetrics, gauges: StreamGauges) -> None:
        super().__init__(metrics)
        self._profiles = profiles
        self._gauges = gauges

    async def __call__(
        self, batches: Sequence[KeyBatch[EcgLabelV1, RhythmState]]
    ) -> list[Handled[RhythmState]]:
        out: list[Handled[RhythmState]] = []
        for kb in batches:
            name, rules = self._profiles.for_stream(kb.key)
            state, changes = rhythm_step(kb.state, [beat_of(m) for m in kb.messages], rules, stream_id=kb.key,
                                         profile=name)
            events = [alert_event(kb.key, ch) for ch in changes]
            out.append(Handled(state, events))
        for kb, h in zip(batches, out, strict=True):  # side effects once every stream succeeded
            self._count([e for e in h.outputs if isinstance(e, AlertEventV1)])
            st = h.state
            assert isinstance(st, RhythmState)
            _, rules = self._profiles.for_stream(kb.key)
            self._gauges.set(kb.key, st.hr_avg, st.af_burden(rules.af.burden_window_s))
        return out


class StatusHandler(_Counting):
    """Batch handler for ``ecg.status``; records each stream's last-heard wall time in Redis.

    Redis unavailable: that write is retried with back-off (the batch waits, see
    :func:`~streamdx_alerts.redis_retry.until_redis_answers`) rather than raised, which would
    dead-letter every status of the batch and lose their technical-alarm state; it gives up
    (raises, and the batch is not committed) only once ``stop`` is set.
    """

    def __init__(self, profiles: Profiles, metrics: AlertsMetrics, redis: Redis, gauges: StreamGauges, *,
                 stop: asyncio.Event | None = None, retry_backoff_s: tuple[float, float] = (0.2, 5.0)) -> None:
        super().__init__(metrics)
        self._profiles = profiles
        self._redis = redis
        self._gauges = gauges
        self._stop = stop
        self._backoff = retry_backoff_s

    async def __call__(
        self, batches: Sequence[KeyBatch[EcgStatusV1, TechnicalState]]
    ) -> list[Handled[TechnicalState]]:
        out: list[Handled[TechnicalState]] = []
        alive: dict[str, float] = {}
        ended: list[str] = []
        now = time.time()
        for kb in batches:
            name, rules = self._profiles.for_stream(kb.key)
            state, changes = technical_step(kb.state, [status_of(m) for m in kb.messages], rules,
                                            stream_id=kb.key, profile=name)
            out.append(Handled(state, [alert_event(kb.key, ch) for ch in changes]))
            if state.finished:
                ended.append(kb.key)
            elif kb.messages:
                alive[kb.key] = now
        if alive or ended:
            async def record_seen() -> None:
                pipe = self._redis.pipeline(transaction=False)
                if alive:
                    pipe.zadd(LAST_SEEN_KEY, alive)
                if ended:
                    pipe.zrem(LAST_SEEN_KEY, *ended)
                await pipe.execute()

            await until_redis_answers(record_seen, what="last-seen times", backoff_s=self._backoff, stop=self._stop)
        for h in out:
            self._count([e for e in h.outputs if isinstance(e, AlertEventV1)])
        for sid in ended:
            self._gauges.remove(sid)
        return out


class EsrHandler(_Counting):
    """Per-record handler for ``esr.forecasts``."""

    def __init__(self, profiles: Profiles, metrics: AlertsMetrics) -> None:
        super().__init__(metrics)
        self._profiles = profiles

    async def __call__(self, msg: EsrForecastV1, state: EsrState | None) -> Handled[EsrState]:
        name, rules = self._profiles.for_stream(msg.tube_id)
        obs = EsrObs(minute=msg.minute, t=time.time(), h60=msg.h60, h60_low=msg.h60_low, h60_high=msg.h60_high,
                     measured_h60=msg.measured_h60, simulated=msg.simulated)
        new, changes = esr_step(state, obs, rules, tube_id=msg.tube_id, profile=name)
        events = [alert_event(msg.tube_id, ch) for ch in changes]
        self._count(events)
        return Handled(new, events)
