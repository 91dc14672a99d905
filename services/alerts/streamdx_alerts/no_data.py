"""No-data watchdog: a technical alarm when a stream's device stops sending.

The status handler records the wall time each stream was last heard of in a Redis sorted
set (:data:`~streamdx_alerts.handlers.LAST_SEEN_KEY`); a stream that ended (a replay's final
chunk) leaves the set. Every ``interval_s`` the watchdog raises ``no_data`` for each stream
silent for ``timeout_s`` and resolves it when the stream is heard again. Claims are made with
``HSETNX`` on a Redis hash, so with several replicas only one raises each alarm.

Times of these events are wall-clock (there is no signal time without data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis

from streamdx.logs import log_fields
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import AlertsMetrics
from streamdx.schemas import AlertEventV1
from streamdx_alerts.engine.lifecycle import AlertChange
from streamdx_alerts.handlers import LAST_SEEN_KEY, alert_event
from streamdx_alerts.rules import Profiles

__all__ = ["OPEN_KEY", "NoDataWatchdog"]

#: Redis hash: stream id → "alert_id|started_at" of its open no_data alarm.
OPEN_KEY = "streamdx:alerts:no_data_open"
log = logging.getLogger("streamdx.alerts")


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class NoDataWatchdog:
    """Raise and resolve ``no_data`` alarms (see the module doc); dependencies injected."""

    def __init__(self, redis: Redis, publisher: Publisher, profiles: Profiles, metrics: AlertsMetrics,
                 timeout_s: float, interval_s: float | None = None) -> None:
        self._redis = redis
        self._publisher = publisher
        self._profiles = profiles
        self._metrics = metrics
        self._timeout = timeout_s
        self._interval = interval_s if interval_s is not None else min(5.0, max(0.2, timeout_s / 4))

    async def check(self, now: float | None = None) -> list[AlertEventV1]:
        """One pass: the events published (raised for newly silent streams, resolved for revived ones)."""
        now = time.time() if now is None else now
        events: list[AlertEventV1] = []
        silent: list[Any] = await self._redis.zrangebyscore(LAST_SEEN_KEY, 0, now - self._timeout, withscores=True)
        for raw, score in silent:
            sid, last_seen = _text(raw), float(score)
            name, _rules = self._profiles.for_stream(sid)
            alert_id = f"{sid}:no_data:{int(last_seen * 1000)}"
            if not await self._redis.hsetnx(OPEN_KEY, sid, f"{alert_id}|{last_seen}"):
                continue
            ch = AlertChange(alert_id, 0, "no_data", "raised", "warning", True, last_seen, last_seen + self._timeout,
                             None, f"{name}/no_data",
                             f"no ECG data for {self._timeout:.0f} s (device silent, disconnected or pipeline stalled)",
                             {"timeout_s": self._timeout})
            events.append(alert_event(sid, ch, now))
        for raw_sid, raw in (await self._redis.hgetall(OPEN_KEY)).items():
            sid = _text(raw_sid)
            alert_id, started = _text(raw).split("|")
            score = await self._redis.zscore(LAST_SEEN_KEY, sid)
            if score is not None and score <= float(started):
                continue  # still silent
            if not await self._redis.hdel(OPEN_KEY, sid):
                continue  # another replica resolved it
            name, _ = self._profiles.for_stream(sid)
            back = float(score) if score is not None else now
            ch = AlertChange(alert_id, 1, "no_data", "resolved", "warning", True, float(started),
                             back, back, f"{name}/no_data",
                             "data resumed" if score is not None else "stream ended",
                             {"duration_s": round(back - float(started), 3)})
            events.append(alert_event(sid, ch, now))
        if events:
            await self._publisher.publish_many(events)
            for e in events:
                self._metrics.alert_events.labels(kind=e.kind, severity=e.severity, state=e.state).inc()
                self._metrics.alerts_open.labels(kind=e.kind, severity=e.severity).inc(
                    1 if e.state == "raised" else -1)
        return events

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``interval_s`` until ``stop``; errors are logged and retried next round."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:  # Redis or broker down: try again next round
                log.warning("no-data watchdog failed", extra=log_fields(error_type=type(exc).__name__))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
