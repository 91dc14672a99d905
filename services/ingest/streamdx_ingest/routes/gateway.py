"""Gateway batches: ``POST /v1/gateway/ecg`` — many devices' ECG chunks in one binary request.

The body is a batch in the format of :mod:`streamdx_ingest.gateway_format`, sent as
``application/vnd.streamdx.ecg-batch`` (or ``application/octet-stream``). Each chunk is
authorised by its own device key (listed in the batch) exactly as a chunk posted to
``/v1/streams/{id}/ecg``, validated on its own, and goes through the same sequencer: it is
published once per ``(stream, seq)``, with gaps signalled and out-of-order chunks refused.
The whole batch costs one Redis round trip for the keys, one to lock and decide every
stream, one publication for all new chunks (the producer batches them) and one to record
them.

Reply 200 with one result per chunk, in the order of the batch: ``accepted``, ``duplicate``
(already published: acknowledged, not republished) or ``error`` with the HTTP code a single
chunk would have got (401/403 key, 409 sequence conflict, 422 invalid values, 429 stream busy).
The batch as a whole is refused only when it is malformed (400), too large (413), of another
media type (415), or when the broker or Redis is unavailable (503, Retry-After; nothing of
the batch was recorded, send it again).
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from streamdx.encoding import encode_i16
from streamdx.metrics import IngestMetrics
from streamdx.schemas import EcgSamplesV1
from streamdx.schemas.ecg import FS_MAX, FS_MIN, MAX_CHUNK_SAMPLES
from streamdx_ingest.acceptance import ChunkAcceptor, SeqConflict
from streamdx_ingest.chunks import ChunkError, adc_check_mv, t0_check
from streamdx_ingest.devices import DeviceAuth, DeviceRegistry, KeyRevoked, stream_allowed
from streamdx_ingest.gateway_format import GATEWAY_MEDIA_TYPE, GatewayChunk, GatewayFormatError, gateway_batch_decode
from streamdx_ingest.sequencer import StreamBusy
from streamdx_ingest.settings import IngestSettings

__all__ = ["GATEWAY_PREFIX", "GatewayDeps", "GatewayReply", "GatewayResult", "router"]

GATEWAY_PREFIX = "/v1/gateway"
_MEDIA_TYPES = (GATEWAY_MEDIA_TYPE, "application/octet-stream")
_STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

router = APIRouter(prefix=GATEWAY_PREFIX, tags=["gateway"])


@dataclass
class GatewayDeps:
    """What the gateway route uses (set on ``app.state.gateway`` by the ingest lifespan)."""

    settings: IngestSettings
    devices: DeviceRegistry
    acceptor: ChunkAcceptor
    metrics: IngestMetrics


class GatewayResult(BaseModel):
    """The outcome of one chunk of a batch."""

    stream_id: str
    seq: int
    status: Literal["accepted", "duplicate", "error"]
    code: int | None = Field(default=None, description="HTTP status a single chunk would have got (errors only)")
    detail: str | None = None
    gap_before: int = 0
    clock_drift_s: float | None = None


class GatewayReply(BaseModel):
    accepted: int
    duplicates: int
    errors: int
    results: list[GatewayResult]


def _error(c: GatewayChunk, code: int, detail: str) -> GatewayResult:
    return GatewayResult(stream_id=c.stream_id, seq=c.seq, status="error", code=code, detail=detail)


def _check_values(c: GatewayChunk, s: IngestSettings, now: datetime) -> str | None:
    """Why the chunk's values are refused (422), or ``None``: the checks of a single chunk."""
    if not _STREAM_ID.match(c.stream_id):
        return "stream id: 1-64 of A-Z a-z 0-9 . _ : - (starting with a letter or digit)"
    if c.seq > 2**31 - 1:
        return "seq: at most 2**31 - 1"
    if not (math.isfinite(c.fs) and FS_MIN <= c.fs <= FS_MAX):
        return f"fs: {c.fs:g} Hz, allowed {FS_MIN:g}..{FS_MAX:g}"
    if not (math.isfinite(c.gain) and 0 < c.gain <= 1e6):
        return "gain: ADC counts per mV must be in (0, 1e6]"
    if c.adc.size > MAX_CHUNK_SAMPLES:
        return f"samples: {c.adc.size}, allowed 1..{MAX_CHUNK_SAMPLES}"
    try:
        t0_check(datetime.fromtimestamp(c.t0, UTC), now, s.max_clock_skew_s, s.max_t0_age_s)
        adc_check_mv(c.adc.astype(np.float64), c.baseline, c.gain, s.max_abs_mv)
    except (ChunkError, ValueError, OverflowError, OSError) as exc:  # ValueError & co: t0 not a time
        return str(exc) if isinstance(exc, ChunkError) else "t0: not a time"
    return None


def _message(c: GatewayChunk) -> EcgSamplesV1:
    return EcgSamplesV1(stream_id=c.stream_id, seq=c.seq, fs=c.fs, t0=datetime.fromtimestamp(c.t0, UTC),
                        gain=c.gain, baseline=c.baseline, n=int(c.adc.size), data=encode_i16(c.adc))  # fmt: skip


@router.post(
    "/ecg",
    response_model=GatewayReply,
    responses={s: {"description": d} for s, d in (
        (400, "malformed batch"), (413, "batch too large"), (415, "not application/vnd.streamdx.ecg-batch"),
        (429, "too many records in flight"), (503, "broker or Redis unavailable: send the batch again"))},
    openapi_extra={"requestBody": {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}} for t in _MEDIA_TYPES}}},
)  # fmt: skip
async def post_gateway_batch(request: Request) -> GatewayReply:
    """Publish a gateway's batch of chunks (see the module documentation for the format and replies)."""
    arrived_ms = int(time.time() * 1000)
    g: GatewayDeps = request.app.state.gateway
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _MEDIA_TYPES:
        raise HTTPException(415, f"send the batch as {GATEWAY_MEDIA_TYPE} (or application/octet-stream)")
    body = await request.body()
    try:
        keys, chunks = gateway_batch_decode(body, g.settings.gateway_max_chunks)
    except GatewayFormatError as exc:
        raise HTTPException(400, str(exc)) from exc
    results: list[GatewayResult | None] = [None] * len(chunks)
    auths = await g.devices.authenticate_many(keys)
    now = datetime.fromtimestamp(arrived_ms / 1000.0, UTC)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(chunks):
        auth = auths[c.key_index]
        if not isinstance(auth, DeviceAuth):
            results[i] = _error(c, 403 if isinstance(auth, KeyRevoked) else 401, str(auth))
        elif not stream_allowed(auth.device_id, c.stream_id):
            results[i] = _error(c, 403, "this key may not write that stream")
        elif (why := _check_values(c, g.settings, now)) is not None:
            results[i] = _error(c, 422, why)
        else:
            groups[c.stream_id].append(i)
    # one group per stream: ascending seq, one fs; a seq repeated inside the batch is a duplicate
    plan: list[tuple[str, list[int]]] = []
    repeats: dict[int, int] = {}  # index of a repeated (stream, seq) -> index of its first copy
    for idx in groups.values():
        idx.sort(key=lambda i: chunks[i].seq)
        first: list[int] = []
        for i in idx:
            if first and chunks[first[-1]].seq == chunks[i].seq:
                repeats[i] = first[-1]
            else:
                first.append(i)
        fs = chunks[first[0]].fs
        if any(chunks[i].fs != fs for i in first):
            for i in first:
                results[i] = _error(chunks[i], 409, "the chunks of one stream in a batch must share one fs")
            continue
        plan.append((chunks[first[0]].stream_id, first))
    outcome = await g.acceptor.accept_many(
        [(sid, [_message(chunks[i]) for i in idx]) for sid, idx in plan], arrived_ms
    )
    for (_sid, idx), res in zip(plan, outcome, strict=True):
        if isinstance(res, SeqConflict | StreamBusy):
            code = 409 if isinstance(res, SeqConflict) else 429
            for i in idx:
                results[i] = _error(chunks[i], code, str(res))
            continue
        for i, d in zip(idx, res, strict=True):
            results[i] = GatewayResult(stream_id=chunks[i].stream_id, seq=chunks[i].seq,
                                       status="duplicate" if d.kind == "duplicate" else "accepted",
                                       gap_before=d.gap_before, clock_drift_s=d.clock_drift_s)  # fmt: skip
    for i, j in repeats.items():  # a repeat is a duplicate of a chunk that made it, else shares its error
        rj = results[j]
        assert rj is not None
        results[i] = rj if rj.status == "error" else rj.model_copy(update={"status": "duplicate", "gap_before": 0})
    final = [r for r in results if r is not None]
    assert len(final) == len(chunks)
    errors = sum(r.status == "error" for r in final)
    g.metrics.ingest_chunks.labels(status="rejected").inc(errors)
    return GatewayReply(accepted=sum(r.status == "accepted" for r in final),
                        duplicates=sum(r.status == "duplicate" for r in final), errors=errors, results=final)
