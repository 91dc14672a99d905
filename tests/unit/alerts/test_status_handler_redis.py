"""The signal-status handler while Redis is unavailable: the batch waits for Redis (its last-seen
write is retried) instead of raising, which would dead-letter good statuses and lose their
technical-alarm state; it raises only once the service is stopping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from streamdx.messaging.worker import KeyBatch
from streamdx.metrics import AlertsMetrics
from streamdx.schemas import EcgStatusV1
from streamdx_alerts.handlers import LAST_SEEN_KEY, StatusHandler, StreamGauges
from streamdx_alerts.rules import Profiles


class FlakyRedis:
    """Stands in for the Redis client: its pipelines fail ``failures`` times, then succeed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.written: list[list[tuple[Any, ...]]] = []

    def pipeline(self, transaction: bool = False) -> _Pipe:
        return _Pipe(self)


class _Pipe:
    def __init__(self, redis: FlakyRedis) -> None:
        self._redis = redis
        self._ops: list[tuple[Any, ...]] = []

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        self._ops.append(("zadd", key, sorted(mapping)))

    def zrem(self, key: str, *members: str) -> None:
        self._ops.append(("zrem", key, members))

    async def execute(self) -> None:
        self._redis.attempts += 1
        if self._redis.failures > 0:
            self._redis.failures -= 1
            raise RedisConnectionError("Redis is restarting")
        self._redis.written.append(self._ops)


def _status(stream_id: str, seq: int) -> EcgStatusV1:
    return EcgStatusV1(stream_id=stream_id, seq=seq, fs=250.0, t_end=datetime(2026, 1, 1, tzinfo=UTC),
                       end_sample=250 * (seq + 1), horizon_sample=250 * seq, last_r_sample=-1)  # fmt: skip


def _handler(redis: FlakyRedis, stop: asyncio.Event | None = None) -> StatusHandler:
    metrics = AlertsMetrics(CollectorRegistry())
    return StatusHandler(Profiles(), metrics, redis, StreamGauges(metrics, 10), stop=stop,  # type: ignore[arg-type]
                         retry_backoff_s=(0.01, 0.02))  # fmt: skip


async def test_waits_for_redis_and_applies_every_status() -> None:
    redis = FlakyRedis(failures=3)
    batches = [KeyBatch("s1", None, (_status("s1", 0), _status("s1", 1))),
               KeyBatch("s2", None, (_status("s2", 0),))]  # fmt: skip
    out = await _handler(redis)(batches)
    assert [h.state.last_seq for h in out if h.state is not None] == [1, 0]
    assert redis.attempts == 4
    assert redis.written == [[("zadd", LAST_SEEN_KEY, ["s1", "s2"])]]


async def test_gives_up_only_when_stopping() -> None:
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(RedisConnectionError):
        await _handler(FlakyRedis(failures=1_000), stop)([KeyBatch("s1", None, (_status("s1", 0),))])
