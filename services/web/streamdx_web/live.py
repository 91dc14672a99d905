"""What the console shows live: recent signal, beat labels and alert events per stream, ESR series per tube.

:class:`LiveCache` is fed by :func:`follow_topics` (read-only Kafka followers of
``ecg.samples``, ``ecg.labels``, ``alerts.events``, ``esr.heights`` and ``esr.forecasts``,
starting at the end of each partition, joining no consumer group — every console replica
sees everything) and read by the pages. It keeps, per stream, the last ``window_s`` seconds
of samples (mV) and the labels of the beats in the last ``label_window_s``; streams named with
:meth:`LiveCache.retain` (uploaded recordings) keep everything up to ``retain_max_samples``.
The least recently updated streams are dropped beyond ``max_streams``. Subscribers (the live
pages' server-sent events) get a wake-up per update through :meth:`LiveCache.subscribe`.

Nothing here re-implements the pipeline: samples are decoded as ingest published them, beats
and labels are the inference service's, alerts the alerts service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.logs import log_fields
from streamdx.messaging.tail import tail_topic
from streamdx.schemas import AlertEventV1, EcgLabelV1, EcgSamplesV1, EsrForecastV1, EsrHeightV1, Message, Topic

__all__ = ["FOLLOWED_TOPICS", "LabelPoint", "LiveCache", "StreamView", "TubeView", "describe", "follow_topics"]

log = logging.getLogger("streamdx.web")

FOLLOWED_TOPICS = (Topic.ECG_SAMPLES, Topic.ECG_LABELS, Topic.ALERTS_EVENTS, Topic.ESR_HEIGHTS, Topic.ESR_FORECASTS)


@dataclass(frozen=True, slots=True)
class LabelPoint:
    """One labelled beat (``t``: R time, s since the epoch)."""

    beat_index: int
    t: float
    rr_prev_s: float
    quality: str
    beat_class: str | None
    af: bool | None
    af_prob: float


@dataclass
class StreamView:
    """Recent data of one ECG stream."""

    stream_id: str
    fs: float = 0.0
    #: chunks as (t0 s, samples mV) in arrival order
    chunks: deque[tuple[float, npt.NDArray[np.float32]]] = field(default_factory=deque)
    n_samples: int = 0
    labels: deque[LabelPoint] = field(default_factory=deque)
    last_event: AlertEventV1 | None = None
    open_alerts: dict[str, AlertEventV1] = field(default_factory=dict)
    last_data_wall: float = 0.0
    last_signal_t: float = 0.0
    source: str = "device"
    final: bool = False
    version: int = 0

    def signal(self, since_t: float | None = None) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """(times s, samples mV) of the kept chunks, optionally from ``since_t`` on."""
        if not self.chunks or self.fs <= 0:
            return np.zeros(0), np.zeros(0, np.float32)
        ts, xs = [], []
        for t0, x in self.chunks:
            t = t0 + np.arange(x.size) / self.fs
            if since_t is not None:
                keep = t >= since_t
                t, x = t[keep], x[keep]
            ts.append(t)
            xs.append(x)
        return np.concatenate(ts), np.concatenate(xs)

    def heart_rate(self, beats: int = 8) -> float | None:
        """Mean rate over the last readable beats (bpm), or None."""
        rr = [p.rr_prev_s for p in list(self.labels)[-beats:] if p.quality == "ok" and 0.2 < p.rr_prev_s < 3.0]
        return 60.0 / (sum(rr) / len(rr)) if len(rr) >= 2 else None

    def rhythm(self) -> str:
        """``AF``, ``sinus`` or ``unreadable`` from the last 10 labels, ``—`` without labels."""
        last = list(self.labels)[-10:]
        if not last:
            return "—"
        ok = [p for p in last if p.quality == "ok"]
        if len(ok) < len(last) / 2:
            return "unreadable"
        return "AF" if sum(bool(p.af) for p in ok) > len(ok) / 2 else "non-AF"

    def quality(self) -> float | None:
        """Share of readable beats among the last 20 (0..1)."""
        last = list(self.labels)[-20:]
        return sum(p.quality == "ok" for p in last) / len(last) if last else None

    def af_burden(self) -> float | None:
        ok = [p for p in self.labels if p.quality == "ok"]
        return sum(bool(p.af) for p in ok) / len(ok) if ok else None


@dataclass
class TubeView:
    """Boundary heights and forecasts of one ESR tube."""

    tube_id: str
    heights: dict[int, float] = field(default_factory=dict)
    forecasts: dict[int, EsrForecastV1] = field(default_factory=dict)
    simulated: bool = False
    version: int = 0


class LiveCache:
    """See the module doc. Not thread-safe: used from the event loop only."""

    def __init__(self, window_s: float = 30.0, max_streams: int = 500, label_window_s: float = 600.0,
                 retain_max_samples: int = 4_000_000, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.label_window_s = label_window_s
        self.max_streams = max_streams
        self.retain_max_samples = retain_max_samples
        self._clock = clock
        self.streams: OrderedDict[str, StreamView] = OrderedDict()
        self.tubes: OrderedDict[str, TubeView] = OrderedDict()
        self._retained: set[str] = set()
        self._subscribers: dict[str, set[asyncio.Event]] = {}

    # --- writers -----------------------------------------------------------------------------

    def retain(self, stream_id: str) -> None:
        """Keep the whole of this stream (an uploaded recording), up to ``retain_max_samples``."""
        self._retained.add(stream_id)

    def apply(self, msg: Message) -> None:
        """Take one message of a followed topic."""
        if isinstance(msg, EcgSamplesV1):
            self._samples(msg)
        elif isinstance(msg, EcgLabelV1):
            self._label(msg)
        elif isinstance(msg, AlertEventV1):
            self._alert(msg)
        elif isinstance(msg, EsrHeightV1 | EsrForecastV1):
            self._esr(msg)

    def _view(self, stream_id: str) -> StreamView:
        v = self.streams.get(stream_id)
        if v is None:
            v = self.streams[stream_id] = StreamView(stream_id)
            while len(self.streams) > self.max_streams:
                old, _ = self.streams.popitem(last=False)
                self._retained.discard(old)
        else:
            self.streams.move_to_end(stream_id)
        return v

    def _samples(self, m: EcgSamplesV1) -> None:
        v = self._view(m.stream_id)
        if v.fs and abs(v.fs - m.fs) > 1e-9:
            v.chunks.clear()
            v.n_samples = 0
        v.fs, v.source, v.final = m.fs, m.source, m.final
        x = m.millivolts().astype(np.float32)
        t0 = m.t0.timestamp()
        v.chunks.append((t0, x))
        v.n_samples += x.size
        v.last_data_wall = self._clock()
        v.last_signal_t = max(v.last_signal_t, t0 + x.size / m.fs)
        if m.stream_id in self._retained:
            while v.n_samples > self.retain_max_samples and len(v.chunks) > 1:
                v.n_samples -= v.chunks.popleft()[1].size
        else:
            horizon = v.last_signal_t - self.window_s
            while len(v.chunks) > 1 and v.chunks[0][0] + v.chunks[0][1].size / m.fs < horizon:
                v.n_samples -= v.chunks.popleft()[1].size
        self._touch(v)

    def _label(self, m: EcgLabelV1) -> None:
        v = self._view(m.stream_id)
        p = LabelPoint(m.beat_index, m.r_time.timestamp(), m.rr_prev_s, m.quality, m.beat_class, m.af, m.af_prob)
        if v.labels and p.beat_index <= v.labels[-1].beat_index:
            return  # a redelivery
        v.labels.append(p)
        if m.stream_id not in self._retained:
            while v.labels and v.labels[0].t < p.t - self.label_window_s:
                v.labels.popleft()
        self._touch(v)

    def _alert(self, e: AlertEventV1) -> None:
        if e.stream_id in self.tubes or e.kind == "esr_high":
            return
        v = self._view(e.stream_id)
        v.last_event = e
        if e.state == "resolved":
            v.open_alerts.pop(e.alert_id, None)
        else:
            v.open_alerts[e.alert_id] = e
        self._touch(v)

    def _esr(self, m: EsrHeightV1 | EsrForecastV1) -> None:
        tv = self.tubes.get(m.tube_id)
        if tv is None:
            tv = self.tubes[m.tube_id] = TubeView(m.tube_id)
            while len(self.tubes) > self.max_streams:
                self.tubes.popitem(last=False)
        if isinstance(m, EsrHeightV1):
            tv.heights[m.minute] = m.height
        else:
            tv.forecasts[m.minute] = m
        tv.simulated = tv.simulated or m.simulated
        tv.version += 1
        self._wake(m.tube_id)

    def _touch(self, v: StreamView) -> None:
        v.version += 1
        self._wake(v.stream_id)

    # --- readers -----------------------------------------------------------------------------

    def _wake(self, key: str) -> None:
        for ev in self._subscribers.get(key, ()):
            ev.set()

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``key`` (a stream or tube) changes; clear it after reading."""
        ev = asyncio.Event()
        self._subscribers.setdefault(key, set()).add(ev)
        try:
            yield ev
        finally:
            subs = self._subscribers.get(key)
            if subs is not None:
                subs.discard(ev)
                if not subs:
                    del self._subscribers[key]

    def data_age_s(self, v: StreamView) -> float | None:
        """Wall seconds since the stream's last samples arrived."""
        return self._clock() - v.last_data_wall if v.last_data_wall else None


async def follow_topics(cache: LiveCache, bootstrap: str, stop: asyncio.Event,
                        topics: tuple[str, ...] = FOLLOWED_TOPICS) -> None:
    """Feed ``cache`` from the followed topics until ``stop``; a broker outage is retried."""

    async def one(topic: str) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                async for msg in _messages(bootstrap, topic, stop):
                    cache.apply(msg)
                    delay = 0.5
            except Exception as exc:  # broker unreachable: the pages keep what they have
                log.warning("live follower failed", extra=log_fields(topic=topic, error_type=type(exc).__name__,
                                                                    retry_in_s=delay))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)

    await asyncio.gather(*(one(t) for t in topics))


async def _messages(bootstrap: str, topic: str, stop: asyncio.Event) -> AsyncIterator[Message]:
    async for msg in tail_topic(bootstrap, topic, stop):
        yield msg


def describe(v: StreamView, cache: LiveCache) -> dict[str, Any]:
    """The stream-list row of one stream."""
    hr = v.heart_rate()
    q = v.quality()
    burden = v.af_burden()
    age = cache.data_age_s(v)
    return {
        "stream_id": v.stream_id, "hr": round(hr) if hr is not None else None, "rhythm": v.rhythm(),
        "af_burden": burden, "quality": q, "source": v.source, "open_alerts": len(v.open_alerts),
        "last_alert": v.last_event, "data_age_s": age, "final": v.final,
    }
