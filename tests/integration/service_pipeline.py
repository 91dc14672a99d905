"""Harness of the resilience tests: the four ECG services as real processes on an embedded stack
of their own, simulated devices sending through the binary gateway, and a collector of every
record the services publish.

- :class:`Pipeline` runs ``python -m streamdx.cli serve ingest|dsp|inference|alerts``
  (:class:`~streamdx_devkit.local_services.LocalServices`, logs in its work dir), kills or stops
  and replaces them, stops and starts Redis or the broker (its
  :class:`~streamdx.embedded.EmbeddedStack`, Redis with an append-only file), creates devices and
  sends their chunks at a chosen pace as a gateway must (a batch refused as a whole is sent again,
  :func:`streamdx_devkit.bench_e2e.gateway_post`, and so is a chunk refused on its own with 429/503);
- :class:`Collector` reads the output topics and their dead-letter topics from the beginning and
  keeps every record, so that a test sees each copy a replay republished;
- a webhook receiver (:class:`tests.integration.webhook_receiver.Receiver`) subscribed to every alert.

Every wait is bounded; :meth:`Pipeline.close` ends every process it started, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamdx.embedded import EmbeddedStack, free_port
from streamdx.messaging.admin import all_topics, ensure_topics
from streamdx.schemas import Topic
from streamdx.schemas.topics import dlq_topic
from streamdx.state_store import StateStore
from streamdx_devkit.bench_e2e import gateway_post
from streamdx_devkit.local_services import LocalService, LocalServices, wait_http_ok
from streamdx_ingest.gateway_format import GatewayChunk, gateway_batch_encode
from tests.integration.webhook_receiver import Receiver

__all__ = ["DEAD_LETTERS", "FS", "GAIN", "OUTPUTS", "WORKERS", "Collector", "Device", "Out", "Pipeline", "Service",
           "running_pipeline"]

FS = 250
GAIN = 200.0
PARTITIONS = 4  # tansu's default too: a topic a client re-creates after a broker restart gets as many
ADMIN_TOKEN = secrets.token_urlsafe(16)
Service = Literal["ingest", "dsp", "inference", "alerts"]
WORKERS: tuple[Service, ...] = ("dsp", "inference", "alerts")
#: Topics the services publish ECG results and alerts on.
OUTPUTS = (Topic.ECG_BEATS.value, Topic.ECG_STATUS.value, Topic.ECG_LABELS.value, Topic.ALERTS_EVENTS.value)
#: Their dead-letter topics and that of the samples: a record there was refused, not processed.
DEAD_LETTERS = tuple(dlq_topic(t) for t in (Topic.ECG_SAMPLES.value, *OUTPUTS))
S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class _Codec(Protocol[S_co]):
    def loads(self, blob: bytes) -> S_co: ...


@dataclass(frozen=True)
class Out:
    """One consumed record: partition key, idempotency key, value and headers."""

    key: str
    idem: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class Device:
    """A simulated device: one stream and the int16 chunks it sends (one row per 1-s chunk)."""

    stream_id: str
    adc: npt.NDArray[np.int16]
    key: str = ""


class Collector:
    """Reads ``topics`` from their beginning and keeps every record in arrival order (``records``).

    :meth:`stop` and :meth:`start` again (after a broker restart) read the new topics from their
    beginning and append to the same lists.
    """

    def __init__(self, bootstrap: str, topics: Iterable[str]) -> None:
        self._bootstrap = bootstrap
        self.records: dict[str, list[Out]] = {t: [] for t in topics}
        self._next: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=100)  # fmt: skip
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            tps = []
            for topic in self.records:
                parts = consumer.partitions_for_topic(topic)
                while not parts:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"topic {topic} has no partitions")
                    await consumer._client.force_metadata_update()
                    parts = consumer.partitions_for_topic(topic) or set()
                    await asyncio.sleep(0.1)
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        except BaseException:
            await consumer.stop()
            raise
        self._next = {tp: 0 for tp in tps}
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for tp, recs in batch.items():
                sink = self.records[tp.topic]
                for r in recs:
                    headers = tuple((k, bytes(v)) for k, v in r.headers)
                    idem = next((v.decode() for k, v in headers if k == "idempotency-key"), "")
                    sink.append(Out(r.key.decode() if r.key else "", idem, bytes(r.value or b""), headers))
                    self._next[tp] = r.offset + 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def synced(self, timeout_s: float = 15.0) -> None:
        """Wait until every record on the topics right now has been read: the high watermarks of
        fetches answered since (fetches wait 100 ms at most) are all reached. (Not ``end_offsets``:
        tansu answers the base offset of a partition's last batch + 1 there.)"""
        consumer = self._consumer
        assert consumer is not None, "collector not started"
        start = time.monotonic()
        while True:
            if self._task is not None and self._task.done():
                self._task.result()
            high = {tp: consumer.highwater(tp) for tp in self._next}
            if time.monotonic() - start > 0.5 and all(h is not None and self._next[tp] >= h for tp, h in high.items()):
                return
            if time.monotonic() - start > timeout_s:
                raise TimeoutError("collector did not reach the end of the topics")
            await asyncio.sleep(0.05)

    def copies(self, topic: str, stream_id: str) -> dict[str, list[Out]]:
        """Every copy of each record of ``stream_id`` on ``topic``, by idempotency key, in arrival order."""
        out: dict[str, list[Out]] = {}
        for r in self.records[topic]:
            if r.key == stream_id:
                out.setdefault(r.idem, []).append(r)
        return out

    def count(self, topic: str, stream_id: str) -> int:
        """Distinct records (idempotency keys) of ``stream_id`` on ``topic``."""
        return len({r.idem for r in self.records[topic] if r.key == stream_id})


@dataclass
class Pipeline:
    """The services as processes on ``stack`` (see the module doc); build with :func:`running_pipeline`."""

    stack: EmbeddedStack
    services: LocalServices
    checkpoint_interval_s: float
    redis: Redis
    collector: Collector
    receiver: Receiver
    #: Time of chunk 0 of every stream (epoch s): one for the module, so a signal gives the same outputs
    #: whenever it is sent.
    t0: float = field(default_factory=lambda: float(int(time.time()) - 600))
    procs: dict[Service, LocalService] = field(default_factory=dict)

    # -- processes -------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        return self.services.logdir

    def _env(self, name: Service, port: int) -> dict[str, str]:
        extra = {"LOG_LEVEL": "WARNING", "METRICS_PORT": str(port),
                 "CHECKPOINT_INTERVAL_S": str(self.checkpoint_interval_s),
                 "KAFKA_SESSION_TIMEOUT_MS": "6000"}  # fmt: skip  # a killed worker's partitions move on sooner
        if name == "ingest":
            extra |= {"INGEST_PORT": str(port), "INGEST_ADMIN_TOKEN": ADMIN_TOKEN}
        elif name == "alerts":  # no wall-clock alarms (no_data) in comparisons; short webhook lease
            extra |= {"ALERTS_ADMIN_TOKEN": ADMIN_TOKEN, "WEBHOOK_ALLOW_PRIVATE": "true", "NO_DATA_TIMEOUT_S": "3600",
                      "WEBHOOK_TIMEOUT_S": "2", "WEBHOOK_LEASE_S": "4", "WEBHOOK_POLL_S": "0.1"}  # fmt: skip
        return extra

    async def spawn(self, name: Service) -> None:
        """Start a process of ``name`` (a replacement when one was killed) on a fresh port; its log
        is ``<name>-<n>.log``, n counting the processes of that service."""
        old = self.procs.get(name)
        assert old is None or old.process.returncode is not None, f"{name} is still running"
        port = free_port()
        n = sum(s.name.startswith(f"{name}-") for s in self.services.running)
        self.procs[name] = await self.services.start(name, self._env(name, port), name=f"{name}-{n}",
                                                     url=f"http://127.0.0.1:{port}")  # fmt: skip

    def url(self, name: Service) -> str:
        return self.procs[name].url

    def log(self, name: Service) -> str:
        """The log of the running process of ``name``."""
        return self.procs[name].log_path.read_text(errors="replace")

    async def wait_ready(self, names: Sequence[Service], timeout_s: float = 120.0) -> None:
        """Wait until each service answers ``/readyz`` 200 (workers: every consumer has its partitions)."""
        async with httpx.AsyncClient(timeout=5) as client:
            for name in names:
                await wait_http_ok(client, f"{self.url(name)}/readyz", timeout_s, self.procs[name].process)

    def pid(self, name: Service) -> int:
        return self.procs[name].pid

    def running(self) -> dict[Service, bool]:
        return {name: s.process.returncode is None for name, s in self.procs.items()}

    async def healthz(self) -> dict[Service, int]:
        """``/healthz`` status of every service (a worker service: 200 while its workers and tasks live)."""
        async with httpx.AsyncClient(timeout=5) as client:
            return {name: (await client.get(f"{self.url(name)}/healthz")).status_code for name in self.procs}

    async def kill_when(self, name: Service, pending: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
        """SIGKILL ``name`` at a moment ``pending()`` holds, checked with the process frozen (SIGSTOP),
        so that what it saw still holds when the process dies. ``False`` if that never happened."""
        proc = self.procs[name].process
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                if await pending():
                    proc.kill()
                    await asyncio.wait_for(proc.wait(), timeout=10)
                    return True
            finally:
                if proc.returncode is None:
                    os.kill(proc.pid, signal.SIGCONT)
            await asyncio.sleep(0.05)
        return False

    async def terminate(self, name: Service, timeout_s: float = 30.0) -> int:
        """SIGTERM ``name`` and wait for it to exit; its exit code."""
        proc = self.procs[name].process
        proc.terminate()
        return await asyncio.wait_for(proc.wait(), timeout=timeout_s)

    async def close(self) -> None:
        """End every process started (SIGTERM, SIGKILL after 20 s), the collector and the receiver."""
        await self.services.stop_all(grace_s=20.0)
        await self.collector.stop()
        await self.receiver.stop()
        await self.redis.aclose()

    # -- servers ---------------------------------------------------------------------------
    async def stop_server(self, name: Literal["redis", "tansu"]) -> None:
        await asyncio.to_thread(self.stack.stop_server, name)

    async def start_server(self, name: Literal["redis", "tansu"]) -> None:
        await asyncio.to_thread(self.stack.start_server, name)

    async def restart_server(self, name: Literal["redis", "tansu"]) -> None:
        await asyncio.to_thread(self.stack.restart, name)

    async def ensure_topics(self) -> None:
        """Create the platform's topics that do not exist (what an operator's topics job does)."""
        await ensure_topics(self.stack.kafka_bootstrap, all_topics(), PARTITIONS)

    # -- devices and data --------------------------------------------------------------------
    async def create_devices(self, prefix: str, signals: Sequence[npt.NDArray[np.int16]]) -> list[Device]:
        """One device (its own key) per signal, streams ``{prefix}-{i}:MLII``."""
        devices = [Device(f"{prefix}-{i}:MLII", adc) for i, adc in enumerate(signals)]
        async with httpx.AsyncClient(base_url=self.url("ingest"), timeout=10) as client:
            for d in devices:
                r = await client.post("/v1/admin/devices", json={"device_id": d.stream_id.split(":")[0]},
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
                r.raise_for_status()
                d.key = r.json()["api_key"]
        return devices

    async def send(self, devices: Sequence[Device], seqs: Iterable[int], rate_hz: float, stats: Counter[str]) -> None:
        """One gateway batch per seq (chunk ``seq`` of every device, t0 = ``self.t0 + seq``, so that
        the same signal gives the same outputs whenever it is sent), ``rate_hz`` batches per second.

        As a gateway must: a batch refused as a whole is sent again (:func:`gateway_post`), and so
        is a chunk refused on its own with 429 or 503 (its stream busy, e.g. still locked by a
        request that a Redis restart interrupted), before the next seq, at most 60 times, 1 s
        apart; any other chunk error fails. ``stats``: see :func:`gateway_post`, plus ``batches``
        sent and ``chunks_resent``."""
        keys = [d.key for d in devices]
        start = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url("ingest"), timeout=30) as client:
            for i, k in enumerate(seqs):
                todo = list(range(len(devices)))
                for _attempt in range(60):
                    batch = [self._chunk(devices, j, k) for j in todo]
                    reply = await gateway_post(client, gateway_batch_encode(keys, batch), stats)
                    assert reply is not None, f"batch {k} refused"
                    errors = [(j, r) for j, r in zip(todo, reply["results"], strict=True) if r["status"] == "error"]
                    assert all(r["code"] in (429, 503) for _, r in errors), errors
                    todo = [j for j, _ in errors]
                    if not todo:
                        break
                    stats["chunks_resent"] += len(todo)
                    await asyncio.sleep(1.0)
                assert not todo, f"chunk {k} of {[devices[j].stream_id for j in todo]} refused 60 times"
                stats["batches"] += 1
                await asyncio.sleep(max(0.0, start + (i + 1) / rate_hz - time.monotonic()))

    def _chunk(self, devices: Sequence[Device], j: int, seq: int) -> GatewayChunk:
        d = devices[j]
        return GatewayChunk(j, d.stream_id, seq, float(FS), self.t0 + seq, GAIN, 0, d.adc[seq])

    async def state(self, group: str, stream_id: str, codec: _Codec[S]) -> S | None:
        """The checkpointed state of ``stream_id`` in consumer group ``group`` (``None``: none yet)."""
        cp = await StateStore(self.redis, group).load(stream_id)
        return None if cp is None or cp.state is None else codec.loads(cp.state)

    async def wait_for(self, what: str, cond: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        """Poll ``cond`` until true (``TimeoutError`` naming ``what`` after ``timeout_s``; a Redis error
        while polling counts as false)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(RedisError, OSError):
                if await cond():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout_s:.0f} s (service logs: {self.workdir})")
            await asyncio.sleep(0.1)

    async def alert_log(self, stream_id: str) -> list[dict[str, Any]]:
        """``GET /v1/alerts?stream_id=`` of the alerts service, every page (at most 20): the alert
        log's records of the stream."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"stream_id": stream_id, "limit": 500}
        async with httpx.AsyncClient(base_url=self.url("alerts"), timeout=10) as client:
            for _page in range(20):
                r = await client.get("/v1/alerts", params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                r.raise_for_status()
                page = r.json()
                items += page["items"]
                if page["next_cursor"] is None:
                    return items
                params["cursor"] = page["next_cursor"]
        raise AssertionError(f"alert log of {stream_id}: more than 20 pages")


@contextlib.asynccontextmanager
async def running_pipeline(workdir: Path, checkpoint_interval_s: float) -> AsyncIterator[Pipeline]:
    """A fresh stack (Redis with an append-only file), its topics, the four services ready, the
    collector reading and the receiver subscribed to every alert; everything ended on exit."""
    with EmbeddedStack(workdir, redis_aof=True) as stack:
        await ensure_topics(stack.kafka_bootstrap, all_topics(), PARTITIONS)
        p = Pipeline(stack, LocalServices(stack.kafka_bootstrap, stack.redis_url, workdir), checkpoint_interval_s,
                     Redis.from_url(stack.redis_url), Collector(stack.kafka_bootstrap, OUTPUTS + DEAD_LETTERS),
                     Receiver(""))  # fmt: skip
        try:
            for name in ("ingest", *WORKERS):
                await p.spawn(name)
            await p.wait_ready(("ingest", *WORKERS))
            await p.receiver.start()
            async with httpx.AsyncClient(base_url=p.url("alerts"), timeout=10) as client:
                r = await client.post("/v1/subscriptions", json={"url": p.receiver.url},
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
                r.raise_for_status()
                p.receiver.secret = r.json()["secret"]
            await p.collector.start()
            yield p
        finally:
            await p.close()
