"""Replaying an uploaded Holter recording into ``ecg.samples`` as a stream, with progress.

Each lead becomes a stream (``<stream_id>:<lead>`` for multi-lead recordings) of chunks
with seq 0, 1, … published through the same :class:`ChunkAcceptor` as live devices, so a
re-upload of the same recording to the same stream is idempotent: chunks already published
are acknowledged as duplicates and not republished. Progress lives in Redis::

    sdx:recording:{recording_id}  hash  device_id, status, streams (JSON list), leads (JSON list),
                                        fs, n_samples, chunks_total, chunks_published, chunks_duplicate,
                                        samples_total, samples_published, error

Both the upload reply and the progress endpoint return a :class:`RecordingStatus`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from streamdx.encoding import encode_i16
from streamdx.logs import log_fields
from streamdx.messaging.errors import Backpressure, BrokerUnavailable
from streamdx.schemas import EcgSamplesV1
from streamdx_ingest.acceptance import ChunkAcceptor
from streamdx_ingest.background import BackgroundJobs
from streamdx_ingest.recordings import Recording
from streamdx_ingest.sequencer import Decision, StreamBusy

__all__ = ["RecordingStatus", "ReplayManager", "ReplayPlan", "replay_messages", "replay_stream_ids"]

log = logging.getLogger("streamdx.ingest.replay")
PROGRESS_TTL_S = 7 * 24 * 3600


def replay_stream_ids(base: str, rec: Recording) -> list[str]:
    """Stream id per lead: ``base`` for one lead, ``base:<lead>`` for several."""
    if len(rec.leads) == 1:
        return [base]
    names = [re.sub(r"[^A-Za-z0-9._-]", "_", lead)[:16] or f"lead{i}" for i, lead in enumerate(rec.leads)]
    if len(set(names)) != len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    return [f"{base}:{n}" for n in names]


class RecordingStatus(BaseModel):
    """An uploaded recording and its replay progress (the upload reply and ``GET /v1/recordings/{id}``)."""

    recording_id: str
    status: Literal["replaying", "done", "failed", "interrupted"]
    streams: list[str] = Field(description="One stream per lead")
    leads: list[str]
    fs: float = Field(description="Sampling frequency (Hz)")
    n_samples: int = Field(description="Samples per lead")
    chunks_total: int
    chunks_published: int
    chunks_duplicate: int = Field(description="Chunks already published by an earlier upload (not republished)")
    samples_total: int
    samples_published: int
    error: str | None = None
    status_url: str


def _status_from_hash(recording_id: str, raw: dict[str, str]) -> RecordingStatus:
    def names(key: str) -> list[str]:
        value = raw.get(key, "")
        return list(json.loads(value)) if value.startswith("[") else [v for v in value.split(",") if v]

    return RecordingStatus(
        recording_id=recording_id, status=raw.get("status", "failed"),  # type: ignore[arg-type]
        streams=names("streams"), leads=names("leads"), fs=float(raw.get("fs", "0")),
        n_samples=int(raw.get("n_samples", "0")),
        **{k: int(raw.get(k, "0")) for k in ("chunks_total", "chunks_published", "chunks_duplicate",
                                              "samples_total", "samples_published")},
        error=raw.get("error") or None, status_url=f"/v1/recordings/{recording_id}",
    )


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    recording_id: str
    device_id: str
    streams: tuple[str, ...]
    chunk_len: int
    chunks_per_lead: int
    speed: float
    t0: datetime


def replay_messages(rec: Recording, plan: ReplayPlan, lead: int, chunk: int) -> EcgSamplesV1:
    """The ``ecg.samples`` message of chunk ``chunk`` of ``lead``."""
    start = chunk * plan.chunk_len
    adc = rec.adc[start : start + plan.chunk_len, lead]
    return EcgSamplesV1(
        stream_id=plan.streams[lead],
        seq=chunk,
        fs=rec.fs,
        t0=plan.t0 + timedelta(seconds=start / rec.fs),
        gain=rec.gain[lead],
        baseline=rec.baseline[lead],
        n=int(adc.size),
        data=encode_i16(adc),
        lead=rec.leads[lead][:16] or None,
        source="replay",
        final=chunk == plan.chunks_per_lead - 1,
    )


class ReplayManager:
    """Runs replays as background tasks; reports progress; stops them cleanly on shutdown."""

    def __init__(self, acceptor: ChunkAcceptor, redis: Redis, batch_chunks: int) -> None:
        self._acceptor = acceptor
        self._redis = redis
        self._batch = batch_chunks
        self._jobs = BackgroundJobs()

    async def start(
        self, rec: Recording, *, device_id: str, stream_base: str, chunk_s: float, speed: float
    ) -> ReplayPlan:
        chunk_len = max(1, round(chunk_s * rec.fs))
        plan = ReplayPlan(
            recording_id=uuid.uuid4().hex,
            device_id=device_id,
            streams=tuple(replay_stream_ids(stream_base, rec)),
            chunk_len=chunk_len,
            chunks_per_lead=-(-rec.n_samples // chunk_len),
            speed=speed,
            t0=datetime.now(UTC),
        )
        key = f"sdx:recording:{plan.recording_id}"
        await self._redis.hset(key, mapping={
            "device_id": device_id, "status": "replaying", "streams": json.dumps(plan.streams),
            "leads": json.dumps(rec.leads), "n_samples": rec.n_samples, "fs": repr(rec.fs),
            "chunks_total": plan.chunks_per_lead * len(plan.streams),
            "chunks_published": 0, "chunks_duplicate": 0, "samples_total": rec.n_samples * len(plan.streams),
            "samples_published": 0, "error": "",
        })
        await self._redis.expire(key, PROGRESS_TTL_S)
        self._jobs.start(plan.recording_id, self._run(rec, plan), name=f"replay-{plan.recording_id}")
        return plan

    async def status(self, recording_id: str, device_id: str) -> RecordingStatus | None:
        """The recording's status if it exists and ``device_id`` uploaded it, else None."""
        raw = await self._redis.hgetall(f"sdx:recording:{recording_id}")
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        if fields.get("device_id") != device_id:
            return None
        return _status_from_hash(recording_id, fields)

    async def wait(self, recording_id: str) -> None:
        await self._jobs.wait(recording_id)

    async def shutdown(self) -> None:
        await self._jobs.shutdown()

    async def _run(self, rec: Recording, plan: ReplayPlan) -> None:
        key = f"sdx:recording:{plan.recording_id}"
        started = time.monotonic()
        chunk_s = plan.chunk_len / rec.fs
        batch = self._batch if plan.speed == 0 else 1  # paced replays publish chunk by chunk
        try:
            for first in range(0, plan.chunks_per_lead, batch):
                chunks = range(first, min(first + batch, plan.chunks_per_lead))
                if plan.speed > 0:  # real time (1) or N× real time
                    due = started + first * chunk_s / plan.speed
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                for lead in range(len(plan.streams)):
                    msgs = [replay_messages(rec, plan, lead, c) for c in chunks]
                    decisions = await self._publish_with_retry(plan.streams[lead], msgs)
                    new = [m for m, d in zip(msgs, decisions, strict=True) if d.kind == "new"]
                    pipe = self._redis.pipeline(transaction=False)
                    pipe.hincrby(key, "chunks_published", len(new))
                    pipe.hincrby(key, "chunks_duplicate", len(msgs) - len(new))
                    pipe.hincrby(key, "samples_published", sum(m.n for m in new))
                    await pipe.execute()
            await self._redis.hset(key, "status", "done")
            log.info("replay done", extra=log_fields(recording_id=plan.recording_id))
        except asyncio.CancelledError:
            await self._redis.hset(key, mapping={"status": "interrupted", "error": "ingest stopped; re-upload resumes"})
            raise
        except Exception as exc:
            await self._redis.hset(key, mapping={"status": "failed", "error": type(exc).__name__})
            log.exception("replay failed", extra=log_fields(recording_id=plan.recording_id))

    async def _publish_with_retry(self, stream_id: str, msgs: list[EcgSamplesV1]) -> list[Decision]:
        delay = 0.2
        for _attempt in range(60):
            try:
                return await self._acceptor.accept(stream_id, msgs)
            except (BrokerUnavailable, Backpressure, StreamBusy):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise BrokerUnavailable("broker unavailable for the replay after 60 attempts")
