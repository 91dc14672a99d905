"""The live strip's data: small JSON deltas of a stream's samples and beat labels, and the
server-sent-event stream that pushes them.

A client's *position* is ``(t, b)``: the time (s since the epoch) of the last sample it has
and the index of the last beat label it has (-1: none). :func:`delta` gives what the
:class:`~streamdx_web.live.StreamView` holds after that position, walking the kept chunks
and labels from the newest end (cost ∝ what is new, not the window). The SSE event's ``id``
is the position, so a browser's ``EventSource`` that reconnects resumes where it was
(``Last-Event-ID``).

:func:`event_stream` is the ``text/event-stream`` body: at most one event per
``min_interval_s`` while data flows (coalescing every update in between), a heartbeat
comment every ``heartbeat_s``; it ends when the client goes away (Starlette cancels it), when
the server shuts down (uvicorn's graceful shutdown marks the request's connection
not-keep-alive, which :func:`server_stopping` watches) and after ``max_lifetime_s`` (the
browser reconnects from its position after ``retry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from streamdx_web.live import LabelPoint, LiveCache, StreamView

__all__ = ["STRIP_S", "beat_row", "delta", "event_stream", "parse_position", "server_stopping", "window"]

#: Seconds the strip shows.
STRIP_S = 10.0


def beat_row(p: LabelPoint) -> list[Any]:
    """``[t, class, af, quality, rr_prev_s, index]`` of one beat (the client's compact form)."""
    return [round(p.t, 4), p.beat_class, p.af, p.quality, round(p.rr_prev_s, 4), p.beat_index]


def _segments(v: StreamView, after_t: float, until_t: float = math.inf) -> list[list[Any]]:
    """Contiguous runs of samples with ``after_t < t <= until_t`` as ``[t0, [µV, ...]]``."""
    if v.fs <= 0:
        return []
    half = 0.5 / v.fs
    picked: list[tuple[float, np.ndarray[Any, Any]]] = []
    for t0, x in reversed(v.chunks):
        end = t0 + (x.size - 1) / v.fs
        if end <= after_t + half:
            break
        i0 = max(0, math.ceil((after_t + half - t0) * v.fs)) if after_t > -math.inf else 0
        i1 = x.size if until_t == math.inf else min(x.size, math.floor((until_t + half - t0) * v.fs))
        if i1 > i0:
            picked.append((t0 + i0 / v.fs, x[i0:i1]))
    out: list[list[Any]] = []
    for t0, x in sorted(picked, key=lambda c: c[0]):
        uv = np.round(x * 1000.0).astype(np.int32).tolist()
        if out:
            prev_t0, prev = out[-1]
            if abs(prev_t0 + len(prev) / v.fs - t0) < half:  # continues the previous run
                prev.extend(uv)
                continue
        out.append([round(t0, 6), uv])
    return out


def _end_t(v: StreamView, segments: list[list[Any]], fallback: float) -> float:
    if not segments:
        return fallback
    t0, y = segments[-1]
    return float(t0 + (len(y) - 1) / v.fs)


def delta(v: StreamView, t: float, b: int, first: bool) -> tuple[dict[str, Any] | None, float, int]:
    """What ``v`` holds after position ``(t, b)``, and the new position.

    ``first``: the client has nothing yet — send the last :data:`STRIP_S` s of signal and
    every kept label (the HR trend). ``None`` when nothing is new.
    """
    if first:
        latest = v.last_signal_t
        segs = _segments(v, latest - STRIP_S - 1.0) if latest else []
        beats = [beat_row(p) for p in v.labels]
    else:
        segs = _segments(v, t)
        beats = []
        for p in reversed(v.labels):
            if p.beat_index <= b:
                break
            beats.append(beat_row(p))
        beats.reverse()
    if not segs and not beats and not first:
        return None, t, b
    new_t = _end_t(v, segs, t)
    new_b = beats[-1][5] if beats else b
    body: dict[str, Any] = {"fs": v.fs, "s": segs, "b": beats}
    if first:
        body["reset"] = True
    return body, new_t, new_b


def window(v: StreamView, at: float) -> dict[str, Any] | None:
    """The strip around ``at`` (±``STRIP_S``/2) if the kept signal covers it, else ``None``."""
    if not v.chunks or v.fs <= 0:
        return None
    first_t = v.chunks[0][0]
    if not first_t - STRIP_S / 2 <= at <= v.last_signal_t + STRIP_S / 2:
        return None
    lo, hi = at - STRIP_S / 2, at + STRIP_S / 2
    segs = _segments(v, lo - 1.0 / v.fs, hi)
    if not segs:
        return None
    beats = [beat_row(p) for p in v.labels if lo <= p.t <= hi]
    return {"fs": v.fs, "s": segs, "b": beats, "reset": True, "frozen": [lo, hi]}


def parse_position(last_event_id: str | None, t: float | None, b: int | None) -> tuple[float, int, bool]:
    """``(t, b, first)`` from ``Last-Event-ID`` (``"t:b"``, a reconnect) or the query."""
    if last_event_id:
        try:
            ts, bs = last_event_id.split(":", 1)
            pt, pb = float(ts), int(bs)
            if math.isfinite(pt):
                return pt, pb, False
        except ValueError:
            pass
    if t is not None and math.isfinite(t):
        return t, b if b is not None else -1, False
    return -math.inf, -1, True


def server_stopping(receive: object) -> Callable[[], bool]:
    """A check that turns true once uvicorn begins a graceful shutdown.

    uvicorn's shutdown asks every open connection to close after its current response by
    clearing the request cycle's ``keep_alive`` (the bound owner of the ASGI ``receive``);
    a long-lived response must end by itself for the server to stop. Servers without that
    attribute: never true (``max_lifetime_s`` still bounds the stream).
    """
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not getattr(cycle, "keep_alive", False):
        return lambda: False
    return lambda: not getattr(cycle, "keep_alive", True)


def _event(body: dict[str, Any], t: float, b: int) -> str:
    pos = f"{t:.6f}:{b}" if math.isfinite(t) else f"-inf:{b}"
    return f"id: {pos}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


async def event_stream(live: LiveCache, stream_id: str, t: float, b: int, first: bool, *,
                       stopping: Callable[[], bool], min_interval_s: float = 0.05, heartbeat_s: float = 10.0,
                       max_lifetime_s: float = 300.0, poll_s: float = 0.5,
                       clock: Callable[[], float] = time.monotonic) -> AsyncIterator[str]:
    """The SSE body for one client of ``stream_id`` from position ``(t, b)`` (see the module doc)."""
    started = last_out = clock()
    yield "retry: 1000\n\n"
    with live.subscribe(stream_id) as changed:
        changed.set()  # look once at what is there already
        while not stopping() and clock() - started < max_lifetime_s:
            wait = min(poll_s, max(0.0, heartbeat_s - (clock() - last_out)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=wait)
            if stopping():
                break
            if changed.is_set():
                changed.clear()
                v = live.streams.get(stream_id)
                if v is not None:
                    if not first and v.chunks and v.last_signal_t < t - 5.0:
                        first = True  # the stream restarted (its clock went back): start over
                    body, t2, b2 = delta(v, t, b, first)
                    if body is not None:
                        first = False
                        t, b = t2, b2
                        yield _event(body | {"meta": _meta(v, live)}, t, b)
                        last_out = clock()
                        await asyncio.sleep(min_interval_s)  # at most ~1/min_interval_s events/s
                        continue
            if clock() - last_out >= heartbeat_s:
                yield ": heartbeat\n\n"
                last_out = clock()


def _meta(v: StreamView, live: LiveCache) -> dict[str, Any]:
    hr = v.heart_rate()
    return {"hr": round(hr) if hr is not None else None, "final": v.final, "age": live.data_age_s(v)}
