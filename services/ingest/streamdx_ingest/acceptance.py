"""Accepting chunks: sequence decision, publication with broker acknowledgement, bookkeeping.

HTTP, WebSocket and recording replay all go through :class:`ChunkAcceptor`, so the
exactly-once-per-seq rule lives in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import IngestMetrics
from streamdx.schemas import EcgSamplesV1
from streamdx_ingest.sequencer import Decision, Reservation, Sequencer, StreamBusy

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

    async def accept(
        self, stream_id: str, msgs: Sequence[EcgSamplesV1], arrived_ms: int | None = None
    ) -> list[Decision]:
        """Publish the new chunks among ``msgs`` (one stream, ascending seq, one fs).

        ``arrived_ms`` (epoch ms, default now) is when the chunks arrived at ingest; it travels
        as the records' ``origin-ts`` trace header (end-to-end latency).

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
        if arrived_ms is None:
            arrived_ms = int(time.time() * 1000)
        res = await self._sequencer.begin(stream_id, [m.seq for m in msgs], fs, self._lock_wait_s)
        try:
            new = self._new_chunks(msgs, res)
            await self._publisher.publish_many(new, origin_ms=arrived_ms)
        except BaseException:
            await asyncio.shield(self._sequencer.abort(res))
            raise
        gaps, samples, next_t0 = _totals(new)
        decisions = self._with_drift(msgs, res.decisions)
        await asyncio.shield(self._sequencer.commit(res, [m.seq for m in new], fs, samples, gaps, next_t0))
        self._count(msgs, new, decisions)
        return decisions

    async def accept_many(
        self, groups: Sequence[tuple[str, Sequence[EcgSamplesV1]]], arrived_ms: int | None = None
    ) -> list[list[Decision] | SeqConflict | StreamBusy]:
        """:meth:`accept` for many streams at once (gateway batches).

        One Redis round trip locks every stream and decides its chunks, one publication
        carries every new chunk of the batch, one round trip records them. ``groups``: one
        entry per stream (a stream at most once), its chunks in ascending seq at one fs.
        Returns per group its decisions, or the :class:`SeqConflict` / :class:`StreamBusy`
        of that stream alone (none of its chunks published). Raises the publisher's
        ``BrokerUnavailable`` / ``Backpressure`` for the whole batch (nothing recorded as
        published: the gateway retries the same batch; chunks the broker did store are then
        duplicates of a seq never recorded, published twice: at-least-once, as for one chunk).
        """
        if arrived_ms is None:
            arrived_ms = int(time.time() * 1000)
        reservations = await self._sequencer.begin_many([(sid, [m.seq for m in msgs], msgs[0].fs)
                                                         for sid, msgs in groups])  # fmt: skip
        held = [r for r in reservations if r is not None]
        results: list[list[Decision] | SeqConflict | StreamBusy] = []
        plans: list[tuple[int, Reservation, list[EcgSamplesV1]]] = []
        publish: list[EcgSamplesV1] = []
        try:
            for i, ((stream_id, msgs), res) in enumerate(zip(groups, reservations, strict=True)):
                if res is None:
                    self._metrics.ingest_chunks.labels(status="busy").inc(len(msgs))
                    results.append(StreamBusy(f"stream {stream_id} is busy"))
                    continue
                try:
                    new = self._new_chunks(msgs, res)
                except SeqConflict as exc:
                    results.append(exc)
                    plans.append((i, res, []))
                    continue
                results.append(res.decisions)
                plans.append((i, res, new))
                publish += new
            await self._publisher.publish_many(publish, origin_ms=arrived_ms)
        except BaseException:
            await asyncio.shield(self._sequencer.abort_many(held))
            raise
        commits = []
        for i, res, new in plans:
            msgs = groups[i][1]
            gaps, samples, next_t0 = _totals(new)
            commits.append((res, [m.seq for m in new], msgs[0].fs, samples, gaps, next_t0))
            if not isinstance(results[i], SeqConflict):
                decisions = self._with_drift(msgs, res.decisions)
                results[i] = decisions
                self._count(msgs, new, decisions)
        await asyncio.shield(self._sequencer.commit_many(commits))
        return results

    def _new_chunks(self, msgs: Sequence[EcgSamplesV1], res: Reservation) -> list[EcgSamplesV1]:
        """The chunks to publish (with their ``gap_before``); :class:`SeqConflict` when any conflicts."""
        bad = [d for d in res.decisions if d.kind in ("out_of_order", "fs_mismatch", "seq_jump")]
        if bad:
            for d in bad:
                self._metrics.ingest_chunks.labels(status=d.kind).inc()
            raise SeqConflict(bad[0].detail)
        return [m.model_copy(update={"gap_before": d.gap_before})
                for m, d in zip(msgs, res.decisions, strict=True) if d.kind == "new"]  # fmt: skip

    def _count(self, msgs: Sequence[EcgSamplesV1], new: Sequence[EcgSamplesV1], decisions: Sequence[Decision]) -> None:
        gaps, samples, _ = _totals(new)
        self._metrics.ingest_chunks.labels(status="accepted").inc(len(new))
        self._metrics.ingest_chunks.labels(status="duplicate").inc(len(msgs) - len(new))
        self._metrics.ingest_samples.inc(samples)
        self._metrics.ingest_gaps.inc(gaps)
        for m, d in zip(msgs, decisions, strict=True):
            if d.clock_drift_s is not None and m.source == "device":
                self._metrics.ingest_clock_drift.observe(abs(d.clock_drift_s))

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


def _totals(new: Sequence[EcgSamplesV1]) -> tuple[int, int, float]:
    """Gaps signalled, samples, and where the chunk after the last new one should start (epoch s)."""
    return sum(m.gap_before for m in new), sum(m.n for m in new), max((_end(m) for m in new), default=0.0)


def _end(msg: EcgSamplesV1) -> float:
    """Epoch seconds where the chunk after ``msg`` should start."""
    return msg.t0.timestamp() + msg.n / msg.fs
