"""Per-stream sequence bookkeeping: duplicates, gaps, out-of-order chunks, fixed fs.

State per stream in Redis::

    sdx:seq:{stream_id}        hash    last (highest published seq), fs, samples, gaps,
                                       next_t0 (epoch s where the chunk after ``last`` should start)
    sdx:seqbits:{stream_id}    bitmap  bit ``seq`` set once that chunk is acknowledged by the broker
    sdx:seqlock:{stream_id}    string  lock token while a request publishes to the stream

Rules: a seq already published is a duplicate (acknowledged, not republished); a seq above
``last + 1`` is published with ``gap_before`` = the number of missing chunks, recorded in
``gaps`` and signalled downstream in the message; a seq below ``last`` that was never
published arrives after its gap was signalled and is refused (409) rather than reordered;
a seq more than ``max_jump`` above ``last`` is refused (409: a device bug, not a gap worth
signalling); a chunk whose fs differs from the stream's is refused (409).

A publication is ``begin`` (take the stream's lock and read its state: one Lua call) →
publish and wait for the broker → ``commit`` (record the seqs and release: one Lua call), or
``abort``. The lock makes two concurrent retries of one chunk, on any ingest replica,
publish it once; it expires by itself if a replica dies holding it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

__all__ = ["Decision", "Sequencer", "StreamBusy", "sequence_decide"]

LOCK_TTL_MS = 30_000

# The three steps, for one stream or many (gateway batches) in one round trip. KEYS: the three
# keys of each stream in turn. BEGIN ARGV: token, ttl, then per stream its seq count and seqs; a
# stream whose lock is held by someone else gets {-2} and is not locked.
_BEGIN = """
local out = {}
local a = 3
for i = 1, #KEYS / 3 do
  local k = (i - 1) * 3
  local c = tonumber(ARGV[a])
  a = a + 1
  if not redis.call('SET', KEYS[k + 1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = {-2}
    a = a + c
  else
    local info = redis.call('HMGET', KEYS[k + 2], 'last', 'fs', 'next_t0')
    local r = {tonumber(info[1] or '-1'), info[2] or '', info[3] or ''}
    for j = 1, c do
      r[#r + 1] = redis.call('GETBIT', KEYS[k + 3], ARGV[a])
      a = a + 1
    end
    out[i] = r
  end
end
return out
"""

# COMMIT ARGV: token, then per stream fs, samples, gaps, next_t0, count, published seqs (ascending).
_COMMIT = """
local a = 2
for i = 1, #KEYS / 3 do
  local k = (i - 1) * 3
  local fs, samples, gaps, nt = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local c = tonumber(ARGV[a + 4])
  a = a + 5
  if c > 0 then
    for j = 0, c - 1 do redis.call('SETBIT', KEYS[k + 3], ARGV[a + j], 1) end
    redis.call('HSET', KEYS[k + 2], 'fs', fs)
    redis.call('HINCRBY', KEYS[k + 2], 'samples', samples)
    redis.call('HINCRBY', KEYS[k + 2], 'gaps', gaps)
    local last = tonumber(redis.call('HGET', KEYS[k + 2], 'last') or '-1')
    local top = ARGV[a + c - 1]
    if tonumber(top) > last then redis.call('HSET', KEYS[k + 2], 'last', top, 'next_t0', nt) end
  end
  if redis.call('GET', KEYS[k + 1]) == ARGV[1] then redis.call('DEL', KEYS[k + 1]) end
  a = a + c
end
return 0
"""

_ABORT = """
for i = 1, #KEYS / 3 do
  if redis.call('GET', KEYS[(i - 1) * 3 + 1]) == ARGV[1] then redis.call('DEL', KEYS[(i - 1) * 3 + 1]) end
end
return 0
"""


class StreamBusy(RuntimeError):
    """Another request holds the stream's lock: HTTP 429, retry."""

    retry_after_s = 1


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one chunk. ``expected_t0`` (epoch s) is where a new chunk that directly
    follows the last published one should start; ``clock_drift_s`` is filled in by the acceptor."""

    kind: Literal["new", "duplicate", "out_of_order", "fs_mismatch", "seq_jump"]
    gap_before: int = 0
    detail: str = ""
    expected_t0: float | None = None
    clock_drift_s: float | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A held stream lock and the decisions taken under it."""

    stream_id: str
    token: str
    decisions: list[Decision]


def sequence_decide(
    seqs: Sequence[int], bits: Sequence[int], last: int, stream_fs: float | None, fs: float, max_jump: int,
    next_t0: float | None = None,
) -> list[Decision]:
    """Decide each of ``seqs`` (ascending) given the stream's state (pure).

    ``bits``: whether each seq was already published; ``last``: the highest published seq (-1:
    none); ``next_t0``: where the chunk after ``last`` should start (epoch s), if known.
    """
    if stream_fs is not None and abs(stream_fs - fs) > 1e-9:
        d = Decision("fs_mismatch", detail=f"stream is at {stream_fs:g} Hz, chunk says {fs:g} Hz")
        return [d for _ in seqs]
    out: list[Decision] = []
    for s, bit in zip(seqs, bits, strict=True):
        if bit:
            out.append(Decision("duplicate"))
        elif s < last:
            out.append(Decision("out_of_order", detail=f"seq {s} is older than the last accepted seq {last}"))
        elif last >= 0 and s - last > max_jump:
            out.append(Decision("seq_jump", detail=(
                f"seq {s} jumps {s - last} ahead of the last accepted seq {last}; at most {max_jump} "
                "(MAX_SEQ_JUMP) is accepted: seq must grow by 1 per chunk")))
        else:
            follows = last >= 0 and s == last + 1
            out.append(Decision("new", gap_before=max(0, s - last - 1) if last >= 0 else 0,
                                expected_t0=next_t0 if follows else None))
            last, next_t0 = s, None  # the next expected t0 in a batch is known only to the acceptor
    return out


def _keys(stream_id: str) -> list[str]:
    return [f"sdx:seqlock:{stream_id}", f"sdx:seq:{stream_id}", f"sdx:seqbits:{stream_id}"]


class Sequencer:
    """Sequence decisions for ingest (Redis client injected)."""

    def __init__(self, redis: Redis, max_jump: int) -> None:
        self._redis = redis
        self._max_jump = max_jump
        self._begin_script = redis.register_script(_BEGIN)
        self._commit_script = redis.register_script(_COMMIT)
        self._abort_script = redis.register_script(_ABORT)

    async def begin(self, stream_id: str, seqs: Sequence[int], fs: float, wait_s: float) -> Reservation:
        """Lock the stream (waiting up to ``wait_s``) and decide each of ``seqs`` (ascending)."""
        deadline = time.monotonic() + wait_s
        while True:
            (res,) = await self.begin_many([(stream_id, seqs, fs)])
            if res is not None:
                return res
            if time.monotonic() >= deadline:
                raise StreamBusy(f"stream {stream_id} is busy")
            await asyncio.sleep(0.01)

    async def commit(self, res: Reservation, published: Sequence[int], fs: float, samples: int, gaps: int,
                     next_t0: float) -> None:
        """Record chunks the broker acknowledged (``next_t0``: where the chunk after the highest
        of them should start, epoch s) and release the lock."""
        await self.commit_many([(res, published, fs, samples, gaps, next_t0)])

    async def abort(self, res: Reservation) -> None:
        """Release the lock without recording anything."""
        await self.abort_many([res])

    async def begin_many(self, streams: Sequence[tuple[str, Sequence[int], float]]) -> list[Reservation | None]:
        """:meth:`begin` for many ``(stream_id, seqs, fs)`` in one round trip, without waiting:
        ``None`` for a stream whose lock another request holds (the caller answers "busy")."""
        if not streams:
            return []
        token = secrets.token_hex(8)
        keys: list[str] = []
        args: list[Any] = [token, LOCK_TTL_MS]
        for stream_id, seqs, _fs in streams:
            keys += _keys(stream_id)
            args += [len(seqs), *seqs]
        rows = await self._begin_script(keys=keys, args=args)
        out: list[Reservation | None] = []
        for (stream_id, seqs, fs), row in zip(streams, rows, strict=True):
            if int(row[0]) == -2:
                out.append(None)
                continue
            raw_fs, raw_next = (v.decode() if isinstance(v, bytes) else str(v) for v in row[1:3])
            decisions = sequence_decide(seqs, [int(b) for b in row[3:]], int(row[0]),
                                        float(raw_fs) if raw_fs else None, fs, self._max_jump,
                                        float(raw_next) if raw_next else None)  # fmt: skip
            out.append(Reservation(stream_id, token, decisions))
        return out

    async def commit_many(self, items: Sequence[tuple[Reservation, Sequence[int], float, int, int, float]]) -> None:
        """:meth:`commit` for many ``(reservation, published, fs, samples, gaps, next_t0)`` in one
        round trip (``published`` may be empty: the lock is only released)."""
        if not items:
            return
        keys: list[str] = []
        args: list[Any] = [items[0][0].token]
        for res, published, fs, samples, gaps, next_t0 in items:
            keys += _keys(res.stream_id)
            args += [repr(fs), samples, gaps, repr(next_t0), len(published), *sorted(published)]
        await self._commit_script(keys=keys, args=args)

    async def abort_many(self, reservations: Sequence[Reservation]) -> None:
        """Release the locks of ``reservations`` (one token) without recording anything."""
        if not reservations:
            return
        keys = [k for r in reservations for k in _keys(r.stream_id)]
        await self._abort_script(keys=keys, args=[reservations[0].token])

    async def stream_info(self, stream_id: str) -> dict[str, float]:
        info = await self._redis.hgetall(f"sdx:seq:{stream_id}")
        return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in info.items()}
