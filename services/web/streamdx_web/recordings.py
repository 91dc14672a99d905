"""Uploaded recordings as the console knows them: their record in Redis and what the pages read from
the :class:`~streamdx_web.live.LiveCache` (signal windows, beats, unreadable spans, label exports).

An upload gets its own ingest device (``web-<hex>``, a fresh key from the ingest admin API) whose
id is the stream base, so its streams (``web-<hex>`` or ``web-<hex>:<lead>``) are opaque ids. The
console keeps, per upload, in ``sdx:web:upload:{recording_id}`` (7 days, like ingest's progress):
the device id and key (the key only until the replay ends; then the final ingest status is stored
and the device revoked), streams, leads, fs, samples per lead, the format and the operator. No file
name and nothing about the patient is stored or logged.

Nothing here labels beats: classes, AF probabilities and quality are the inference service's.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from redis.asyncio import Redis

from streamdx_web.live import LabelPoint, StreamView

__all__ = [
    "LABEL_FIELDS",
    "TTL_S",
    "UploadMeta",
    "beat_rows",
    "label_records",
    "labels_csv",
    "load_meta",
    "recent_uploads",
    "save_meta",
    "signal_window",
    "stream_origin",
    "unreadable_spans",
]

TTL_S = 7 * 24 * 3600
_KEY = "sdx:web:upload:{}"
_LIST = "sdx:web:uploads"
#: Columns of the label exports (CSV header, JSON keys).
LABEL_FIELDS = ("stream_id", "lead", "beat_index", "t_s", "r_time", "rr_prev_s", "quality", "beat_class", "af",
                "af_prob")


@dataclass
class UploadMeta:
    """One upload (see the module doc)."""

    recording_id: str
    device_id: str
    streams: list[str]
    leads: list[str]
    fs: float
    n_samples: int
    fmt: str
    uploaded_by: str
    created: float
    api_key: str = ""
    final: dict[str, Any] | None = None
    atr_ignored: bool = False

    def lead_of(self, stream_id: str) -> str:
        i = self.streams.index(stream_id)
        return self.leads[i] if i < len(self.leads) else stream_id

    @property
    def created_utc(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs if self.fs else 0.0


def _s(v: bytes | str | None) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")


async def save_meta(redis: Redis, m: UploadMeta, *, new: bool = False) -> None:
    key = _KEY.format(m.recording_id)
    await redis.hset(key, mapping={
        "device_id": m.device_id, "streams": json.dumps(m.streams), "leads": json.dumps(m.leads), "fs": repr(m.fs),
        "n_samples": m.n_samples, "fmt": m.fmt, "uploaded_by": m.uploaded_by, "created": repr(m.created),
        "api_key": m.api_key, "final": json.dumps(m.final) if m.final else "", "atr_ignored": int(m.atr_ignored),
    })  # fmt: skip
    await redis.expire(key, TTL_S)
    if new:
        await redis.lpush(_LIST, m.recording_id)
        await redis.ltrim(_LIST, 0, 49)
        await redis.expire(_LIST, TTL_S)


async def load_meta(redis: Redis, recording_id: str) -> UploadMeta | None:
    if not recording_id.isalnum() or len(recording_id) > 64:
        return None
    raw = {_s(k): _s(v) for k, v in (await redis.hgetall(_KEY.format(recording_id))).items()}
    if not raw.get("device_id"):
        return None
    try:
        return UploadMeta(
            recording_id=recording_id, device_id=raw["device_id"], streams=list(json.loads(raw["streams"])),
            leads=list(json.loads(raw["leads"])), fs=float(raw["fs"]), n_samples=int(raw["n_samples"]),
            fmt=raw.get("fmt", ""), uploaded_by=raw.get("uploaded_by", ""), created=float(raw.get("created", "0")),
            api_key=raw.get("api_key", ""), final=json.loads(raw["final"]) if raw.get("final") else None,
            atr_ignored=raw.get("atr_ignored") == "1",
        )  # fmt: skip
    except (KeyError, ValueError):
        return None


async def recent_uploads(redis: Redis, limit: int = 20) -> list[UploadMeta]:
    ids = [_s(v) for v in await redis.lrange(_LIST, 0, limit - 1)]
    out = []
    for rid in ids:
        m = await load_meta(redis, rid)
        if m is not None:
            out.append(m)
    return out


# ------------------------------------------------------------------------------ cache readers


def stream_origin(v: StreamView, n_samples: int | None = None) -> float:
    """Epoch time of the stream's first sample: the start of its recording when its length is
    known (chunks are contiguous, so ``end - n/fs`` even when early chunks were dropped), else
    the first chunk kept."""
    if n_samples and v.fs and v.last_signal_t:
        return v.last_signal_t - n_samples / v.fs
    if v.chunks:
        return v.chunks[0][0]
    return v.labels[0].t if v.labels else 0.0


def unreadable_spans(labels: Sequence[LabelPoint], origin: float) -> list[tuple[float, float]]:
    """Spans (s from ``origin``) of beats that failed the quality gate: from the previous R peak
    (or RR_prev before it) to the beat's R peak, adjacent spans merged."""
    spans: list[tuple[float, float]] = []
    prev_t: float | None = None
    for p in labels:
        if p.quality != "ok":
            a = prev_t if prev_t is not None and p.t - prev_t < 5.0 else p.t - min(p.rr_prev_s, 3.0)
            a, b = a - origin, p.t - origin
            if spans and a <= spans[-1][1] + 1e-6:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        prev_t = p.t
    return [(round(a, 3), round(b, 3)) for a, b in spans]


def _beat(p: LabelPoint, origin: float) -> list[Any]:
    prob = p.af_prob if math.isfinite(p.af_prob) else None
    return [round(p.t - origin, 4), p.beat_class, None if prob is None else round(prob, 3), p.quality,
            p.beat_index, round(p.rr_prev_s, 3), p.af]  # fmt: skip


def _labels_between(labels: Sequence[LabelPoint], a: float, b: float) -> list[LabelPoint]:
    ts = [p.t for p in labels]
    return list(labels)[bisect.bisect_left(ts, a) : bisect.bisect_right(ts, b)]


def signal_window(v: StreamView, origin: float, t0: float | None, t1: float | None, *, max_full: int = 30_000,
                  buckets: int = 2_000, max_beats: int = 5_000) -> dict[str, Any]:
    """Samples (s from ``origin``, mV) in ``[t0, t1]`` — every sample when at most ``max_full``,
    else the min and max of ``buckets`` buckets — with the beats, their labels and the
    unreadable spans of the window."""
    t, x = v.signal()
    full_a = float(t[0] - origin) if t.size else 0.0
    full_b = float(t[-1] - origin) if t.size else 0.0
    a = full_a if t0 is None or not math.isfinite(t0) else max(full_a, t0)
    b = full_b if t1 is None or not math.isfinite(t1) else min(full_b, t1)
    if t.size:
        lo = int(np.searchsorted(t, origin + a, "left"))
        hi = int(np.searchsorted(t, origin + b, "right"))
        tw, xw = t[lo:hi] - origin, x[lo:hi]
    else:
        tw, xw = np.zeros(0), np.zeros(0, np.float32)
    decimated = tw.size > max_full
    if decimated:
        xs, ys = _minmax(tw, xw, buckets)
    else:
        xs, ys = tw, xw.astype(np.float64)
    labels = _labels_between(v.labels, origin + a - 0.01, origin + b + 0.01)
    if len(labels) > max_beats:  # an overview of a long recording: keep the beats worth seeing
        labels = [p for p in labels if p.quality != "ok" or p.beat_class not in (None, "N") or p.af][:max_beats]
    return {
        "fs": v.fs, "t0": round(a, 4), "t1": round(b, 4), "extent": [round(full_a, 4), round(full_b, 4)],
        "decimated": bool(decimated), "x": np.round(xs, 4).tolist(), "y": np.round(ys, 4).tolist(),
        "beats": [_beat(p, origin) for p in labels],
        "spans": [s for s in unreadable_spans(list(v.labels), origin) if s[1] >= a and s[0] <= b],
    }  # fmt: skip


def _minmax(t: npt.NDArray[np.float64], x: npt.NDArray[np.float32],
            buckets: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Min and max of each of ``buckets`` equal-count buckets, in time order (an envelope that keeps
    every R peak visible)."""
    n = t.size // buckets * buckets
    if n == 0:
        return t, x.astype(np.float64)
    tb = t[:n].reshape(buckets, -1)
    xb = x[:n].reshape(buckets, -1).astype(np.float64)
    imin, imax = xb.argmin(axis=1), xb.argmax(axis=1)
    first = np.minimum(imin, imax)
    second = np.maximum(imin, imax)
    rows = np.arange(buckets)
    xs = np.empty(2 * buckets)
    ys = np.empty(2 * buckets)
    xs[0::2], xs[1::2] = tb[rows, first], tb[rows, second]
    ys[0::2], ys[1::2] = xb[rows, first], xb[rows, second]
    return xs, ys


def beat_rows(v: StreamView, origin: float, page: int, per_page: int = 25) -> tuple[list[dict[str, Any]], int]:
    """One page of the beat table and the number of pages."""
    labels = list(v.labels)
    pages = max(1, -(-len(labels) // per_page))
    page = min(max(page, 1), pages)
    rows = [{"t": p.t - origin, "beat_index": p.beat_index, "rr": p.rr_prev_s, "cls": p.beat_class, "af": p.af,
             "af_prob": p.af_prob, "quality": p.quality}
            for p in labels[(page - 1) * per_page : page * per_page]]  # fmt: skip
    return rows, pages


def label_records(items: Iterable[tuple[str, str, StreamView, float]]) -> list[dict[str, Any]]:
    """Rows of the label exports: ``items`` = (stream id, lead, view, origin)."""
    out = []
    for stream_id, lead, v, origin in items:
        for p in v.labels:
            out.append({
                "stream_id": stream_id, "lead": lead, "beat_index": p.beat_index, "t_s": round(p.t - origin, 4),
                "r_time": datetime.fromtimestamp(p.t, UTC).isoformat(timespec="milliseconds"),
                "rr_prev_s": round(p.rr_prev_s, 4), "quality": p.quality, "beat_class": p.beat_class, "af": p.af,
                "af_prob": round(p.af_prob, 4) if math.isfinite(p.af_prob) else None,
            })  # fmt: skip
    return out


def labels_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LABEL_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else r[k] for k in LABEL_FIELDS})
    return buf.getvalue()


def now() -> float:
    return time.time()
