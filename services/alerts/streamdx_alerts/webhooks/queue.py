"""The durable webhook delivery queue in Redis.

One delivery = one (subscription, alert event) pair, identified by
``{subscription_id}|{event_id}``. Its record is a hash; the ids waiting for an attempt are
members of one sorted set scored by the (wall-clock) time they are due::

    sdx:webhooks:d:{sub}|{event_id}  hash  sub, event (JSON), attempts, state, err, final, created
    sdx:webhooks:due                 zset  delivery id → due time (epoch s)
    sdx:webhooks:dead                zset  delivery id → time it was dead-lettered (bounded)

* **Enqueue** is idempotent: a delivery whose record exists (queued, delivered, dead) is not
  queued again, so an event redelivered by Kafka is never POSTed twice once delivered.
  Finished records expire after ``record_ttl_s``, which bounds that de-duplication window.
* **Claim** takes the due ids and moves their score to ``now + lease``: the id stays in the
  set while its POST is in flight. If the process dies, the id becomes due again when the
  lease ends and another dispatcher attempts it: delivery is at-least-once, and receivers
  de-duplicate on ``webhook-id``.
* **Finish** (delivered, dead, dropped) removes the id and lets the record expire; **retry**
  and **postpone** set a new due time (a retry counts an attempt, a postponement does not).

Every step is one Lua script, atomic in Redis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from streamdx.schemas.alerts import AlertEventV1

__all__ = ["DeadDelivery", "Delivery", "DeliveryQueue", "ReplayResult", "delivery_id"]

_PREFIX = "sdx:webhooks:"
DUE = f"{_PREFIX}due"
DEAD = f"{_PREFIX}dead"
DEAD_INDEX_MAX = 10_000
ReplayResult = Literal["queued", "already_queued", "already_delivered"]


def delivery_id(subscription_id: str, event_id: str) -> str:
    """The queue id of the delivery of ``event_id`` to ``subscription_id``."""
    return f"{subscription_id}|{event_id}"


def _record_key(did: str) -> str:
    return f"{_PREFIX}d:{did}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery: what to send, where, and how many attempts failed already."""

    id: str
    subscription_id: str
    event: AlertEventV1
    attempts: int
    final: str
    """Non-empty once the delivery has failed for good (its dead letter is still to publish)."""
    last_error: str


@dataclass(frozen=True, slots=True)
class DeadDelivery:
    """A dead-lettered delivery as listed by ``GET /v1/deliveries/dead``."""

    subscription_id: str
    event_id: str
    attempts: int
    last_error: str
    failed_at: float


_ENQUEUE = """
local now = ARGV[1]
local n = 0
for i = 2, #KEYS do
  local j = 2 + (i - 2) * 3
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'sub', ARGV[j + 1], 'event', ARGV[j + 2], 'attempts', 0,
               'state', 'pending', 'err', '', 'final', '', 'created', now)
    redis.call('ZADD', KEYS[1], now, ARGV[j])
    n = n + 1
  end
end
return n
"""

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {ids, first[2] or ''}
"""

_FINISH = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'state', ARGV[2], 'attempts', ARGV[3], 'err', ARGV[4])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
if ARGV[2] == 'dead' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
  local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[7])
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1) end
end
return 1
"""

_RESCHEDULE = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[2], 'attempts', ARGV[3], 'err', ARGV[4], 'final', ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

_REPLAY = """
local state = redis.call('HGET', KEYS[2], 'state')
if state == 'pending' then return 'already_queued' end
if state == 'delivered' then return 'already_delivered' end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'sub', ARGV[2], 'event', ARGV[3], 'attempts', 0,
           'state', 'pending', 'err', '', 'final', '', 'created', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 'queued'
"""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class DeliveryQueue:
    """The delivery queue (see the module doc); the Redis client is injected.

    Parameters
    ----------
    redis : Redis
        The Redis client.
    record_ttl_s : int
        Seconds a finished delivery's record is kept (the de-duplication window).
    """

    def __init__(self, redis: Redis, record_ttl_s: int = 7 * 24 * 3600) -> None:
        self._redis = redis
        self._ttl = record_ttl_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)
        self._reschedule = redis.register_script(_RESCHEDULE)
        self._replay = redis.register_script(_REPLAY)

    async def enqueue(self, event: AlertEventV1, subscription_ids: Sequence[str], now: float | None = None) -> int:
        """Queue ``event`` for each subscription (idempotent); returns how many were new."""
        if not subscription_ids:
            return 0
        blob = event.model_dump_json()
        keys: list[str] = [DUE]
        args: list[str | float] = [time.time() if now is None else now]
        for sub_id in subscription_ids:
            did = delivery_id(sub_id, event.event_id)
            keys.append(_record_key(did))
            args += [did, sub_id, blob]
        return int(await self._enqueue(keys=keys, args=args))

    async def claim(self, limit: int, lease_s: float, now: float | None = None) -> tuple[list[str], float | None]:
        """Up to ``limit`` due ids, leased for ``lease_s``; and the due time of the next id (or ``None``)."""
        now = time.time() if now is None else now
        ids, first = await self._claim(keys=[DUE], args=[now, now + lease_s, limit])
        return [_text(i) for i in ids], (float(first) if first not in (b"", "", None) else None)

    async def load(self, did: str) -> Delivery | None:
        """The record of a claimed delivery, ``None`` if it has gone (the id is removed)."""
        raw = await self._redis.hgetall(_record_key(did))
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not fields.get("event") or fields.get("state") != "pending":
            await self._redis.zrem(DUE, did)
            return None
        return Delivery(id=did, subscription_id=fields["sub"],
                        event=AlertEventV1.model_validate_json(fields["event"]),
                        attempts=int(fields.get("attempts") or 0), final=fields.get("final", ""),
                        last_error=fields.get("err", ""))

    async def _end(self, did: str, state: str, attempts: int, error: str, now: float | None = None) -> None:
        await self._finish(keys=[DUE, _record_key(did), DEAD],
                           args=[did, state, attempts, error[:300], self._ttl,
                                 time.time() if now is None else now, DEAD_INDEX_MAX])

    async def delivered(self, did: str, attempts: int) -> None:
        """The receiver accepted the delivery: remove it, remember it for ``record_ttl_s``."""
        await self._end(did, "delivered", attempts, "")

    async def dead(self, did: str, attempts: int, error: str) -> None:
        """The delivery failed for good and its dead letter is published: remove it."""
        await self._end(did, "dead", attempts, error)

    async def dropped(self, did: str, reason: str) -> None:
        """The subscription was deleted or disabled: remove the delivery without sending."""
        await self._end(did, "dropped", 0, reason)

    async def reschedule(self, did: str, due_at: float, attempts: int, error: str, final: str = "") -> bool:
        """Due again at ``due_at`` (a retry or a postponement); ``False`` if the record has gone."""
        return bool(await self._reschedule(keys=[DUE, _record_key(did)],
                                           args=[did, due_at, attempts, error[:300], final]))

    async def release(self, dids: Sequence[str], now: float | None = None) -> None:
        """Make claimed ids due now (a dispatcher stopping with POSTs unfinished)."""
        if dids:
            now = time.time() if now is None else now
            await self._redis.zadd(DUE, dict.fromkeys(dids, now), xx=True)

    async def replay(self, subscription_id: str, event: AlertEventV1, now: float | None = None) -> ReplayResult:
        """Queue a dead-lettered delivery again with a fresh attempt count.

        Returns ``"queued"``, or ``"already_queued"`` / ``"already_delivered"`` when the
        delivery is waiting or was delivered since (nothing is done then).
        """
        did = delivery_id(subscription_id, event.event_id)
        result = await self._replay(keys=[DUE, _record_key(did), DEAD],
                                    args=[did, subscription_id, event.model_dump_json(),
                                          time.time() if now is None else now])
        out = _text(result)
        assert out in ("queued", "already_queued", "already_delivered")
        return out  # type: ignore[return-value]

    async def pending(self) -> int:
        """Deliveries waiting for an attempt or a retry, or in flight."""
        return int(await self._redis.zcard(DUE))

    async def state(self, subscription_id: str, event_id: str) -> dict[str, str]:
        """The record of one delivery (empty when unknown or expired), for tests and operators."""
        raw = await self._redis.hgetall(_record_key(delivery_id(subscription_id, event_id)))
        return {_text(k): _text(v) for k, v in raw.items() if _text(k) != "event"}

    async def dead_letters(self, limit: int = 100) -> list[DeadDelivery]:
        """The most recent dead-lettered deliveries still remembered, newest first."""
        entries: list[Any] = list(await self._redis.zrevrange(DEAD, 0, max(0, limit - 1), withscores=True))
        out: list[DeadDelivery] = []
        gone: list[str] = []
        for member, score in entries:
            did = _text(member)
            fields = {_text(k): _text(v) for k, v in (await self._redis.hgetall(_record_key(did))).items()}
            if fields.get("state") != "dead":
                gone.append(did)
                continue
            sub_id, _, event_id = did.partition("|")
            out.append(DeadDelivery(sub_id, event_id, int(fields.get("attempts") or 0), fields.get("err", ""),
                                    float(score)))
        if gone:
            await self._redis.zrem(DEAD, *gone)
        return out
