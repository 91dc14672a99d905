"""Accepting chunks: sequence decision, publication with broker acknowledgement, bookkeeping.

HTTP, WebSocket and recording replay all go through :class:`ChunkAcceptor`, so the
exactly-once-per-seq rule lives in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import IngestMetrics
from streamdx.schemas import EcgSamplesV1
from streamdx_ingest.sequencer import Decision, Sequencer, StreamBusy

__all__ = ["ChunkAcceptor", "SeqConflict", "StreamBusy"]


class SeqConflict(ValueError):
    """The chunk conflicts with the stream (out of order, absurd seq jump, other fs): HTTP 409."""


class ChunkAcceptor:
    """Publishes chunks of a stream exactly once per ``seq`` (dependencies injected)."""

    def __init__(self, publisher: Publisher, sequencer: Sequencer, metrics: IngestMetrics, lock_wait_s: float) -> None:
        self._publisher = publisher
        self._sequencer = sequencer
        self._metrics = metrics
        self._lock_wait_s = lock_wait_s

    async def accept(self, stream_id: str, msgs: Sequence[EcgSamplesV1]) -> list[Decision]:
        """Publish the new chunks among ``msgs`` (one stream, ascending seq, one fs).

        Returns one decision per message; a new chunk that directly follows the previous one
        carries its ``clock_drift_s`` (its t0 minus the previous t0 + n / fs). Raises
        :class:`SeqConflict` when any chunk is out of order, jumps too far ahead or is at another
        fs (nothing of the batch is published then),
        :class:`StreamBusy`, or the publisher's ``BrokerUnavailable`` / ``Backpressure``
        (nothing recorded as published: the client retries the same seq).
        """
        if not msgs:
            return []
        fs = msgs[0].fs
        res = await self._sequencer.begin(stream_id, [m.seq for m in msgs], fs, self._lock_wait_s)
        try:
            bad = [d for d in res.decisions if d.kind in ("out_of_order", "fs_mismatch", "seq_jump")]
            if bad:
                for d in bad:
                    self._metrics.ingest_chunks.labels(status=d.kind).inc()
                raise SeqConflict(bad[0].detail)
            new = [
                m.model_copy(update={"gap_before": d.gap_before})
                for m, d in zip(msgs, res.decisions, strict=True)
                if d.kind == "new"
            ]
            await self._publisher.publish_many(new)
        except BaseException:
            await asyncio.shield(self._sequencer.abort(res))
            raise
        gaps = sum(m.gap_before for m in new)
        samples = sum(m.n for m in new)
        decisions = self._with_drift(msgs, res.decisions)
        next_t0 = max((_end(m) for m in new), default=0.0)
        await asyncio.shield(self._sequencer.commit(res, [m.seq for m in new], fs, samples, gaps, next_t0))
        self._metrics.ingest_chunks.labels(status="accepted").inc(len(new))
        self._metrics.ingest_chunks.labels(status="duplicate").inc(len(msgs) - len(new))
        self._metrics.ingest_samples.inc(samples)
        self._metrics.ingest_gaps.inc(gaps)
        for m, d in zip(msgs, decisions, strict=True):
            if d.clock_drift_s is not None and m.source == "device":
                self._metrics.ingest_clock_drift.observe(abs(d.clock_drift_s))
        return decisions

    @staticmethod
    def _with_drift(msgs: Sequence[EcgSamplesV1], decisions: Sequence[Decision]) -> list[Decision]:
        out: list[Decision] = []
        prev: EcgSamplesV1 | None = None
        for m, d in zip(msgs, decisions, strict=True):
            if d.kind == "new":
                expected = _end(prev) if prev is not None and m.seq == prev.seq + 1 else d.expected_t0
                if expected is not None:
                    d = dataclasses.replace(d, clock_drift_s=round(m.t0.timestamp() - expected, 6))
                prev = m
            out.append(d)
        return out


def _end(msg: EcgSamplesV1) -> float:
    """Epoch seconds where the chunk after ``msg`` should start."""
    return msg.t0.timestamp() + msg.n / msg.fs
