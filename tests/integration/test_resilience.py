"""Resilience of the ECG pipeline, with every service a real process (``streamdx serve ...``) on a
broker and a Redis server of this module's own (they are restarted here).

Input: four deterministic synthetic 250-Hz ECG streams of 40 s (``af``, ``pause``, ``brady``,
``tachy``: each yields rhythm alarms), sent by four devices through ``POST /v1/gateway/ecg``, one
chunk per device per batch, faster than real time. Every test sends the same four signals under
stream ids of its own, with the same chunk times, and compares what the services published with
the **reference**: the same signals sent first, under other ids, through the same processes with
no interruption (its beat counts are also those of the offline DSP core). Records are compared
per stream by idempotency key, the stream id replaced by a placeholder:

- ``ecg.beats``, ``ecg.status``, ``ecg.labels``: the first copy of each record is byte-identical to
  the reference's, and there are exactly the reference's records (none missing, none extra);
- ``alerts.events``: the same events (``alert_id:seq``) with the same content except
  ``emitted_at`` (the wall time the engine emitted the event, by definition not replayable);
- a record published more than once (an at-least-once replay) is identical to its first copy:
  same key and idempotency key, same value and headers (alert events: same key and idempotency key,
  same value but ``emitted_at``; their ``origin-ts`` trace header names the last label of the
  batch that emitted them, which a replay may batch differently). De-duplicated by idempotency
  key, nothing is therefore duplicated;
- nothing went to a dead-letter topic; the alert log holds each alert once with the reference's
  kind, state, seq and event history (no double raise); the webhook receiver got every event,
  under its ``event_id`` as ``webhook-id`` (a second POST of one id carries the same body).

Tests (in this order, on one set of processes; each leaves them running):

- **SIGKILL** of the alerts, inference and dsp processes mid-stream, each at a moment (checked with
  the process frozen by SIGSTOP) when it had published outputs that its last checkpoint does not
  cover, so a replay is certain; a new process of each is started at once (the kills come within
  a batch or two of each other, so the three wait together for the dead consumers' sessions to
  expire). Then: as the reference, and each of beats, labels and alert events has republished
  copies, all identical to the first.
- **SIGTERM** of the three mid-stream, replaced: as the reference and zero republished records,
  every webhook exactly once (a stopping worker checkpoints and commits what it did).
- **Redis restart** (append-only file, so its data survives): Redis stopped mid-stream for 3 s
  (the ingest answers 503 to a batch, the alerts service's webhook dispatcher meets it down);
  then started on the same port. The gateway sends a refused batch again, and a chunk refused on its own with 429
  (a request interrupted between publication and bookkeeping leaves its streams locked until the
  lock expires, 30 s) before its next one. Every process survives (same pid, healthy; a worker
  that met a stream not in its memory used to raise on the checkpoint load and stop its
  service), each chunk is accepted exactly once, nothing is dead-lettered (the alerts service's
  status handler used to dead-letter the statuses of a batch that met Redis down) and the output
  is the reference's: every chunk, sent before, during or after the outage, is processed.
- **Broker restart**: the first half of the streams is processed, then tansu is restarted; this
  embedded build keeps everything in memory, so topics, records and committed offsets are gone.
  The topics are created again (as an operator's topics job does; the workers' consumers may
  re-create some first, with the broker's default of as many partitions) and the next batch is
  sent: it is processed end to end once every worker has re-joined its group (same processes,
  same pids), then the rest of the streams. The output is the reference's. The workers apply the
  records of the re-created topics although their offsets restart below the streams'
  checkpointed offsets, because a checkpoint at or beyond a partition's end cannot be of that
  log (they used to skip them all as replays); a re-created partition that had already grown past
  a checkpoint when the worker first read it could not be told from a replay, hence the one
  batch first. Nothing was in flight at the restart: records accepted and not yet consumed when
  the in-memory broker stops are lost (a real Kafka cluster keeps them on disk and the workers
  resume at their committed offsets), which this test therefore cannot show.

Receiver down then up (webhooks delivered once each after a 60-s outage) is covered by
``test_webhooks_outage.py::test_receiver_down_for_60_s_loses_nothing``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from streamdx.schemas import Topic
from streamdx_alerts.engine.rhythm import RhythmState
from streamdx_alerts.engine.technical import TechnicalState
from streamdx_alerts.handlers import JsonStateCodec
from streamdx_devkit.bench_e2e import beats_per_chunk
from streamdx_devkit.sim import ecg_synthesize, mv_to_adc
from streamdx_dsp.ecg_handler import DspStateCodec
from streamdx_inference.ecg_handler import EcgLabelStateCodec
from tests.integration.service_pipeline import (
    DEAD_LETTERS,
    FS,
    GAIN,
    OUTPUTS,
    WORKERS,
    Device,
    Pipeline,
    Service,
    running_pipeline,
)

pytestmark = pytest.mark.integration

SECONDS = 40
#: Scenario, heart rate and seed of each stream: each raises rhythm alarms within 40 s (AF at 32 s,
#: pauses near 16 and 29 s, bradycardia near 29 s, tachycardia near 24 s).
SCENARIOS = (("af", 100.0, 3), ("pause", 70.0, 101), ("brady", 70.0, 102), ("tachy", 80.0, 103))
RATE_HZ = 4.0  # batches (one 1-s chunk per device) per second: 4x real time
CHECKPOINT_INTERVAL_S = 1.0
REDIS_OUTAGE_S = 3.0  # > 2 checkpoint intervals: every worker with state to save meets Redis down
BEATS, STATUS, LABELS, ALERTS = (Topic.ECG_BEATS.value, Topic.ECG_STATUS.value, Topic.ECG_LABELS.value,
                                 Topic.ALERTS_EVENTS.value)  # fmt: skip
RHYTHM_KINDS = frozenset({"af_episode", "bradycardia", "tachycardia", "pause", "vt_run"})
#: Consumer groups (the services' defaults) whose checkpoints the tests read.
DSP_GROUP, INFERENCE_GROUP, RHYTHM_GROUP, STATUS_GROUP = "dsp", "inference-ecg", "alerts-rhythm", "alerts-status"
PLACEHOLDER = b"<stream>"


class Signals:
    """The streams' ADC chunks and the beats the offline DSP core emits after each chunk."""

    def __init__(self) -> None:
        self.adc: list[npt.NDArray[np.int16]] = []
        self.beats: list[list[int]] = []
        for scenario, hr, seed in SCENARIOS:
            rec = ecg_synthesize(SECONDS, FS, seed=seed, scenario=scenario, heart_rate_bpm=hr)
            adc = np.ascontiguousarray(mv_to_adc(rec.signal_mv, GAIN)[: SECONDS * FS].reshape(SECONDS, FS))
            self.adc.append(adc)
            self.beats.append(beats_per_chunk(adc, FS, GAIN))

    def beats_until(self, n_chunks: int) -> list[int]:
        """Beats of each stream once its first ``n_chunks`` chunks are processed."""
        return [sum(b[:n_chunks]) for b in self.beats]


@pytest.fixture(scope="module")
def signals() -> Signals:
    return Signals()


@pytest.fixture(scope="module")
async def pipeline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    async with running_pipeline(tmp_path_factory.mktemp("resilience"), CHECKPOINT_INTERVAL_S) as p:
        yield p


@pytest.fixture(scope="module")
async def reference(pipeline: Pipeline, signals: Signals) -> list[Device]:
    """The signals sent through the pipeline without interruption; its outputs have no duplicates."""
    devices = await pipeline.create_devices("ref", signals.adc)
    stats: Counter[str] = Counter()
    await pipeline.send(devices, range(SECONDS), 10.0, stats)
    await wait_processed(pipeline, devices, SECONDS, signals)
    assert stats["accepted"] == SECONDS * len(devices), stats
    for d, n in zip(devices, signals.beats_until(SECONDS), strict=True):
        assert pipeline.collector.count(BEATS, d.stream_id) == n  # what the offline DSP core emits
        assert all(len(c) == 1 for t in OUTPUTS for c in pipeline.collector.copies(t, d.stream_id).values())
    assert sum(pipeline.collector.count(ALERTS, d.stream_id) for d in devices) >= len(devices)
    return devices


# -- waiting and comparing ------------------------------------------------------------------------
async def wait_processed(p: Pipeline, devices: Sequence[Device], n_chunks: int, signals: Signals,
                         timeout_s: float = 60.0) -> None:  # fmt: skip
    """Wait until the first ``n_chunks`` chunks of every device went through every stage: their beats,
    statuses and labels are published and the alert engines checkpointed their last label and status
    (so their alert events are published), and the collector has read everything."""
    want = signals.beats_until(n_chunks)
    seen: dict[str, tuple[int, ...]] = {}

    async def done() -> bool:
        for d, nb in zip(devices, want, strict=True):
            sid, c = d.stream_id, p.collector
            rhythm = await p.state(RHYTHM_GROUP, sid, JsonStateCodec(RhythmState))
            status = await p.state(STATUS_GROUP, sid, JsonStateCodec(TechnicalState))
            seen[sid] = got = (c.count(BEATS, sid), c.count(LABELS, sid), c.count(STATUS, sid),
                               -2 if rhythm is None else rhythm.last_index, -2 if status is None else status.last_seq)
            if any(g < w for g, w in zip(got, (nb, nb, n_chunks, nb - 1, n_chunks - 1), strict=True)):
                return False
        return True

    what = f"chunks 0..{n_chunks - 1} of {devices[0].stream_id.split('-')[0]} processed"
    try:
        await p.wait_for(what, done, timeout_s)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; beats, labels, statuses, rhythm and status checkpoints {seen}, "
                           f"want beats {want}") from None
    await p.collector.synced()


def _content(topic: str, value: bytes, stream_id: str) -> Any:
    """What must equal the reference: the value with the stream id replaced (alert events: as JSON,
    without ``emitted_at``)."""
    v = value.replace(stream_id.encode(), PLACEHOLDER)
    if topic != ALERTS:
        return v
    event = json.loads(v)
    event.pop("emitted_at")
    return event


def check_as_reference(p: Pipeline, devices: Sequence[Device], reference: Sequence[Device]) -> Counter[str]:
    """Assert the outputs of ``devices`` are those of ``reference`` and every republished copy is
    identical to its first (see the module doc); the republished copies per topic."""
    republished: Counter[str] = Counter()
    for d, r in zip(devices, reference, strict=True):
        for topic in OUTPUTS:
            got = p.collector.copies(topic, d.stream_id)
            for idem, (first, *again) in got.items():
                for c in again:
                    assert (c.key, c.idem) == (first.key, first.idem)
                    if topic == ALERTS:
                        assert _content(topic, c.value, d.stream_id) == _content(topic, first.value, d.stream_id), idem
                    else:
                        assert (c.value, c.headers) == (first.value, first.headers), f"{idem} republished differently"
                republished[topic] += len(again)
            mine = {i.replace(d.stream_id, "<stream>"): _content(topic, c[0].value, d.stream_id)
                    for i, c in got.items()}  # fmt: skip
            ref = {i.replace(r.stream_id, "<stream>"): _content(topic, c[0].value, r.stream_id)
                   for i, c in p.collector.copies(topic, r.stream_id).items()}  # fmt: skip
            missing, extra = sorted(ref.keys() - mine.keys()), sorted(mine.keys() - ref.keys())
            differ = sorted(k for k in ref.keys() & mine.keys() if ref[k] != mine[k])
            assert not (missing or extra or differ), (
                f"{topic} of {d.stream_id}: missing {missing[:5]}, extra {extra[:5]}, differ {differ[:5]}")
    assert all(not p.collector.records[t] for t in DEAD_LETTERS), {t: len(p.collector.records[t]) for t in DEAD_LETTERS}
    return republished


def _log_view(items: list[dict[str, Any]], stream_id: str) -> dict[str, tuple[Any, ...]]:
    return {a["alert_id"].replace(stream_id, "<stream>"): (a["kind"], a["state"], a["seq"],
                                                           [h["seq"] for h in a["history"]])
            for a in items}  # fmt: skip


async def check_alert_log_and_webhooks(p: Pipeline, devices: Sequence[Device], reference: Sequence[Device],
                                       webhooks_once: bool) -> None:  # fmt: skip
    """The alert log holds the reference's alerts once each (kind, state, seq, history of seqs), and
    the receiver got every event as a webhook (``webhooks_once``: exactly one POST per id)."""
    for d, r in zip(devices, reference, strict=True):
        want = _log_view(await p.alert_log(r.stream_id), r.stream_id)
        assert want, f"no alert in the reference log of {r.stream_id}"

        async def same_log(d: Device = d, want: dict[str, tuple[Any, ...]] = want) -> bool:
            return _log_view(await p.alert_log(d.stream_id), d.stream_id) == want

        await p.wait_for(f"alert log of {d.stream_id}", same_log, 20)
        events = set(p.collector.copies(ALERTS, d.stream_id))

        def hits(d: Device = d) -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {}
            for h in p.receiver.delivered():
                if h.body is not None and h.body["data"]["stream_id"] == d.stream_id:
                    out.setdefault(h.webhook_id, []).append(h.body)
            return out

        async def all_delivered(events: set[str] = events) -> bool:
            return set(hits()) == events

        await p.wait_for(f"webhooks of {d.stream_id}", all_delivered, 20)
        for wid, bodies in hits().items():
            assert all(b == bodies[0] for b in bodies), f"webhook {wid} sent with different bodies"
            assert not webhooks_once or len(bodies) == 1, f"webhook {wid} sent {len(bodies)} times"


# -- what a worker has published beyond its last checkpoint (read while it is frozen) -------------
def _max_index(p: Pipeline, topic: str, stream_id: str) -> int:
    return max((int(i.rsplit(":", 1)[1]) for i in p.collector.copies(topic, stream_id)), default=-1)


async def beats_pending(p: Pipeline, devices: Sequence[Device]) -> bool:
    """A beat published that the dsp's checkpoint does not cover (the replay publishes it again)."""
    for d in devices:
        st = await p.state(DSP_GROUP, d.stream_id, DspStateCodec())
        if _max_index(p, BEATS, d.stream_id) >= (st.next_beat_index if st is not None else 0):
            return True
    return False


async def labels_pending(p: Pipeline, devices: Sequence[Device]) -> bool:
    """A label published that the inference's checkpoint does not cover."""
    for d in devices:
        st = await p.state(INFERENCE_GROUP, d.stream_id, EcgLabelStateCodec())
        if _max_index(p, LABELS, d.stream_id) > (st.last_beat_index if st is not None else -1):
            return True
    return False


async def alerts_pending(p: Pipeline, devices: Sequence[Device]) -> bool:
    """A rhythm alarm published whose criterion time is after the last beat of the rhythm engine's
    checkpoint: the beat that emitted it is replayed, so it is emitted again."""
    for d in devices:
        events = [json.loads(c[0].value) for c in p.collector.copies(ALERTS, d.stream_id).values()]
        times = [datetime.fromisoformat(e["criterion_at"]).timestamp() for e in events if e["kind"] in RHYTHM_KINDS]
        if not times:
            continue
        st = await p.state(RHYTHM_GROUP, d.stream_id, JsonStateCodec(RhythmState))
        last_t = st.last_t if st is not None and st.last_t is not None else -math.inf
        if max(times) > last_t:
            return True
    return False


Pending = Callable[[Pipeline, Sequence[Device]], Awaitable[bool]]


# -- tests ------------------------------------------------------------------------------------------
async def test_sigkill_of_each_worker_mid_stream_loses_and_duplicates_nothing(
    pipeline: Pipeline, signals: Signals, reference: list[Device]
) -> None:
    p = pipeline
    devices = await p.create_devices("kill", signals.adc)
    stats: Counter[str] = Counter()
    sender = asyncio.create_task(p.send(devices, range(SECONDS), RATE_HZ, stats))
    killed_after: dict[str, int] = {}
    try:
        kills: tuple[tuple[Service, Pending], ...] = (("alerts", alerts_pending), ("inference", labels_pending),
                                                      ("dsp", beats_pending))  # fmt: skip
        for name, pending in kills:
            killed = await p.kill_when(name, lambda pending=pending: pending(p, devices), 30)  # type: ignore[misc]
            assert killed, f"{name} never had outputs beyond its checkpoint"
            killed_after[name] = stats["batches"]
            await p.spawn(name)
        await asyncio.wait_for(sender, 90)
    finally:
        sender.cancel()
    print(f"killed after batch: {killed_after}")
    assert all(0 < n < SECONDS for n in killed_after.values()), killed_after  # mid-stream
    await p.wait_ready(WORKERS)
    await wait_processed(p, devices, SECONDS, signals)
    republished = check_as_reference(p, devices, reference)
    print(f"republished after the kills: {dict(republished)}")
    assert republished[BEATS] > 0 and republished[LABELS] > 0 and republished[ALERTS] > 0, republished
    await check_alert_log_and_webhooks(p, devices, reference, webhooks_once=False)


async def test_sigterm_mid_stream_republishes_nothing(pipeline: Pipeline, signals: Signals,
                                                      reference: list[Device]) -> None:  # fmt: skip
    p = pipeline
    devices = await p.create_devices("term", signals.adc)
    stats: Counter[str] = Counter()
    sender = asyncio.create_task(p.send(devices, range(SECONDS), RATE_HZ, stats))
    try:
        async def labelled() -> bool:
            return all(p.collector.count(LABELS, d.stream_id) > 0 for d in devices)

        await p.wait_for("first labels", labelled, 30)
        codes = await asyncio.gather(*(p.terminate(name) for name in WORKERS))
        stopped_after = stats["batches"]
        assert codes == [0, 0, 0], codes
        for name in WORKERS:
            await p.spawn(name)
        await asyncio.wait_for(sender, 90)
    finally:
        sender.cancel()
    assert 0 < stopped_after < SECONDS
    await p.wait_ready(WORKERS)
    await wait_processed(p, devices, SECONDS, signals)
    assert check_as_reference(p, devices, reference) == Counter()
    await check_alert_log_and_webhooks(p, devices, reference, webhooks_once=True)


async def test_redis_restart_mid_stream_every_service_continues(pipeline: Pipeline, signals: Signals,
                                                               reference: list[Device]) -> None:  # fmt: skip
    p = pipeline
    pids = {name: p.pid(name) for name in p.procs}
    devices = await p.create_devices("redis", signals.adc)
    stats: Counter[str] = Counter()
    sender = asyncio.create_task(p.send(devices, range(SECONDS), RATE_HZ, stats))
    try:
        async def labelled() -> bool:
            return all(p.collector.count(LABELS, d.stream_id) > 0 for d in devices)

        await p.wait_for("first labels", labelled, 30)
        await p.stop_server("redis")
        down_at, stopped_after = time.monotonic(), stats["batches"]

        async def refused() -> bool:
            return stats["http_503"] > 0

        await p.wait_for("a 503 from ingest while Redis is down", refused, 30)
        await asyncio.sleep(max(0.0, down_at + REDIS_OUTAGE_S - time.monotonic()))  # the outage's length
        assert all(p.running().values()), p.running()
        await p.start_server("redis")
        await asyncio.wait_for(sender, 90)
    finally:
        sender.cancel()
    assert 0 < stopped_after < SECONDS
    assert "delivery queue unavailable" in p.log("alerts")  # the webhook dispatcher polls Redis every 0.1 s
    print("met Redis down:", {n: [m for m in ("checkpoint failed", "checkpoint load failed") if m in p.log(n)]
                              for n in WORKERS})  # fmt: skip
    await wait_processed(p, devices, SECONDS, signals)
    assert {name: p.pid(name) for name in p.procs} == pids and all(p.running().values())
    assert set((await p.healthz()).values()) == {200}
    assert stats["accepted"] + stats["duplicates"] == SECONDS * len(devices), stats  # each chunk once
    check_as_reference(p, devices, reference)
    await check_alert_log_and_webhooks(p, devices, reference, webhooks_once=False)


async def test_broker_restart_services_reconnect_and_continue(pipeline: Pipeline, signals: Signals,
                                                              reference: list[Device]) -> None:  # fmt: skip
    p = pipeline
    pids = {name: p.pid(name) for name in p.procs}
    devices = await p.create_devices("broker", signals.adc)
    stats: Counter[str] = Counter()
    half = SECONDS // 2
    await p.send(devices, range(half), RATE_HZ, stats)
    await wait_processed(p, devices, half, signals)  # nothing in flight: the in-memory broker would lose it
    await p.collector.stop()
    await p.restart_server("tansu")
    await p.ensure_topics()
    await p.collector.start()
    await p.send(devices, [half], RATE_HZ, stats)  # processed end to end once every worker has reconnected
    await wait_processed(p, devices, half + 1, signals)
    await p.send(devices, range(half + 1, SECONDS), RATE_HZ, stats)
    await wait_processed(p, devices, SECONDS, signals)
    assert {name: p.pid(name) for name in p.procs} == pids and all(p.running().values())
    assert set((await p.healthz()).values()) == {200}
    assert stats["accepted"] + stats["duplicates"] == SECONDS * len(devices), stats  # each chunk once
    check_as_reference(p, devices, reference)
    await check_alert_log_and_webhooks(p, devices, reference, webhooks_once=False)

