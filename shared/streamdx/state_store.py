"""Per-key state in Redis, checkpointed together with the consumed offset.

Checkpoints expire ``ttl_s`` after their last write (a stream silent that long starts afresh).

A checkpoint is one Redis hash per key holding the serialised state *and* the partition
and offset of the last message applied to it; a batch's checkpoints are written atomically
by one server-side script (one round trip and one reply however many keys: a transaction
of four commands per key cost the workers more than their own work at 1,000 streams). A worker
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

# KEYS: the n state hashes, then the partition index sets. ARGV: ttl, version, n, then per
# state hash: partition, offset, state, position of its index set among the sets (1-based), key.
_SAVE_MANY = """
local ttl, v, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local a = 4
for i = 1, n do
  redis.call('HSET', KEYS[i], 'v', v, 'p', ARGV[a], 'o', ARGV[a + 1], 'state', ARGV[a + 2])
  redis.call('EXPIRE', KEYS[i], ttl)
  redis.call('SADD', KEYS[n + tonumber(ARGV[a + 3])], ARGV[a + 4])
  a = a + 5
end
for j = n + 1, #KEYS do redis.call('EXPIRE', KEYS[j], ttl) end
return n
"""


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
        self._save_many = redis.register_script(_SAVE_MANY)

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
        """Write all checkpoints atomically, in one round trip (a server-side script)."""
        if not checkpoints:
            return
        parts: dict[int, int] = {}
        keys: list[str] = []
        args: list[bytes | int | str] = [self._ttl_s, STORE_FORMAT_VERSION, len(checkpoints)]
        for key, cp in checkpoints.items():
            keys.append(self._key(key))
            pos = parts.setdefault(cp.partition, len(parts) + 1)
            args += [cp.partition, cp.offset, cp.state if cp.state is not None else b"", pos, key]
        keys += [self._index(p) for p in parts]
        await self._save_many(keys=keys, args=args)

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
