"""Per-key state in Redis, checkpointed together with the consumed offset.

Checkpoints expire ``ttl_s`` after their last write (a stream silent that long starts afresh).

A checkpoint is one Redis hash per key holding the serialised state *and* the partition
and offset of the last message applied to it, written atomically (MULTI/EXEC). A worker
that replaces a dead one loads the checkpoint and skips every redelivered record at or
below that offset, so a stream is resumed without losing or applying a message twice.

Layout (``ns`` = consumer group)::

    sdx:state:{ns}:{key}       hash  v, state, p, o
    sdx:keys:{ns}:{partition}  set   keys last seen on that partition (rebalance prefetch)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

__all__ = ["STORE_FORMAT_VERSION", "Checkpoint", "StateStore"]

STORE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Serialised state of one key and the last record applied to it."""

    state: bytes | None
    partition: int
    offset: int


class StateStore:
    """Checkpoints of one consumer group in Redis (the client is injected)."""

    def __init__(self, redis: Redis, namespace: str, ttl_s: int = 14 * 24 * 3600) -> None:
        self._redis = redis
        self._ns = namespace
        self._ttl_s = ttl_s

    def _key(self, key: str) -> str:
        return f"sdx:state:{self._ns}:{key}"

    def _index(self, partition: int) -> str:
        return f"sdx:keys:{self._ns}:{partition}"

    async def load(self, key: str) -> Checkpoint | None:
        """The checkpoint of ``key`` or ``None`` when the key has none."""
        raw = await self._redis.hgetall(self._key(key))
        return self._decode(raw)

    async def load_many(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        keys = list(keys)
        if not keys:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(self._key(k))
        raws = await pipe.execute()
        out: dict[str, Checkpoint] = {}
        for k, raw in zip(keys, raws, strict=True):
            cp = self._decode(raw)
            if cp is not None:
                out[k] = cp
        return out

    async def keys_for_partition(self, partition: int) -> set[str]:
        members = await self._redis.smembers(self._index(partition))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def forget(self, partition: int, keys: Iterable[str]) -> None:
        """Drop ``keys`` from a partition's index (their checkpoints expired or moved)."""
        keys = list(keys)
        if keys:
            await self._redis.srem(self._index(partition), *keys)

    async def save_many(self, checkpoints: Mapping[str, Checkpoint]) -> None:
        """Write all checkpoints in one MULTI/EXEC transaction."""
        if not checkpoints:
            return
        pipe = self._redis.pipeline(transaction=True)
        for key, cp in checkpoints.items():
            mapping: dict[str, bytes | int] = {
                "v": STORE_FORMAT_VERSION,
                "p": cp.partition,
                "o": cp.offset,
                "state": cp.state if cp.state is not None else b"",
            }
            pipe.hset(self._key(key), mapping=mapping)  # type: ignore[arg-type]
            pipe.expire(self._key(key), self._ttl_s)
            pipe.sadd(self._index(cp.partition), key)
            pipe.expire(self._index(cp.partition), self._ttl_s)
        await pipe.execute()

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._key(key))

    @staticmethod
    def _decode(raw: Mapping[Any, Any]) -> Checkpoint | None:
        if not raw:
            return None
        version = int(raw.get(b"v", b"0"))
        if version != STORE_FORMAT_VERSION:
            raise ValueError(f"checkpoint format v{version} is not v{STORE_FORMAT_VERSION}")
        blob = raw.get(b"state", b"")
        return Checkpoint(state=blob or None, partition=int(raw[b"p"]), offset=int(raw[b"o"]))
