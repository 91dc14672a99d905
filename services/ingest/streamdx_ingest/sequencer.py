"""Per-stream sequence bookkeeping: duplicates, gaps, out-of-order chunks, fixed fs.

State per stream in Redis::

    sdx:seq:{stream_id}        hash    last (highest published seq), fs, samples, gaps
    sdx:seqbits:{stream_id}    bitmap  bit ``seq`` set once that chunk is acknowledged by the broker

Rules: a seq already published is a duplicate (acknowledged, not republished); a seq above
``last + 1`` is published with ``gap_before`` = the number of missing chunks, recorded in
``gaps`` and signalled downstream in the message; a seq below ``last`` that was never
published arrives after its gap was signalled and is refused (409) rather than reordered;
a chunk whose fs differs from the stream's is refused (409).

The caller holds the stream's lock (:meth:`Sequencer.lock`) across classify → publish →
mark, so two concurrent retries of one chunk cannot both publish it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

__all__ = ["Decision", "Sequencer"]

MAX_SEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Literal["new", "duplicate", "out_of_order", "fs_mismatch"]
    gap_before: int = 0
    detail: str = ""


class Sequencer:
    """Sequence decisions for ingest (Redis client injected)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def lock(self, stream_id: str, wait_s: float) -> Lock:
        return self._redis.lock(f"sdx:seqlock:{stream_id}", timeout=30, blocking_timeout=wait_s)

    async def classify(self, stream_id: str, seqs: Sequence[int], fs: float) -> list[Decision]:
        """Decide each of ``seqs`` (ascending, in order of publication) for ``stream_id``."""
        info = await self._redis.hgetall(f"sdx:seq:{stream_id}")
        last = int(info[b"last"]) if b"last" in info else -1
        stream_fs = float(info[b"fs"]) if b"fs" in info else None
        if stream_fs is not None and abs(stream_fs - fs) > 1e-9:
            d = Decision("fs_mismatch", detail=f"stream is at {stream_fs:g} Hz, chunk says {fs:g} Hz")
            return [d for _ in seqs]
        pipe = self._redis.pipeline(transaction=False)
        for s in seqs:
            pipe.getbit(f"sdx:seqbits:{stream_id}", s)
        bits = await pipe.execute()
        out: list[Decision] = []
        for s, bit in zip(seqs, bits, strict=True):
            if bit:
                out.append(Decision("duplicate"))
            elif s < last:
                out.append(Decision("out_of_order", detail=f"seq {s} is older than the last accepted seq {last}"))
            else:
                out.append(Decision("new", gap_before=max(0, s - last - 1) if last >= 0 else 0))
                last = s
        return out

    async def mark_published(self, stream_id: str, seqs: Sequence[int], fs: float, samples: int, gaps: int) -> None:
        """Record acknowledged chunks (call only after the broker acknowledged them)."""
        if not seqs:
            return
        pipe = self._redis.pipeline(transaction=True)
        for s in seqs:
            pipe.setbit(f"sdx:seqbits:{stream_id}", s, 1)
        key = f"sdx:seq:{stream_id}"
        pipe.hset(key, "fs", repr(fs))
        pipe.hincrby(key, "samples", samples)
        pipe.hincrby(key, "gaps", gaps)
        # ``last`` only grows: compare-and-set in Lua keeps it monotonic.
        pipe.eval(
            "local c = tonumber(redis.call('HGET', KEYS[1], 'last') or '-1'); "
            "if tonumber(ARGV[1]) > c then redis.call('HSET', KEYS[1], 'last', ARGV[1]) end; return 0",
            1, key, str(max(seqs)),
        )
        await pipe.execute()

    async def stream_info(self, stream_id: str) -> dict[str, float]:
        info = await self._redis.hgetall(f"sdx:seq:{stream_id}")
        return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in info.items()}
