"""The one consume loop of the platform.

A :class:`StreamWorker` consumes one topic in one consumer group and calls a typed async
handler with each key's state, either per record (``handler``) or once per ``getmany`` batch
for all keys (``batch_handler``, see "Batch mode" below). Per batch it:

1. validates each record against the topic's model — a record that fails goes to
   ``<topic>.dlq`` with the reason in headers, never blocks the partition;
2. skips records at or below the checkpointed offset of their key (redelivery after a crash
   or rebalance; a key's checkpoint is loaded from Redis when it is not in memory, waiting while
   Redis is unavailable), so state is never applied twice — unless that offset is at or beyond the
   partition's high watermark, which a partition's log never shrinks below: the topic was
   deleted and created again (a broker that kept it in memory restarted, an operator re-created
   it), so the record is new data and is applied to the key's state (a re-created topic that
   has already grown past the checkpointed offset when the worker first reads it cannot be
   told from a replay);
3. calls the handler with the key's state; a handler that raises sends the record to the
   dead-letter topic with the reason and keeps the state object it was given (a handler that
   updates its state in place must therefore validate before it mutates);
4. publishes all outputs and dead letters and waits for the broker's acknowledgement
   (retrying with back-off while the broker is unavailable);
5. checkpoints every touched key's state with its offset in Redis (one atomic script);
6. commits the Kafka offsets.

Every output carries the trace header ``origin-ts`` (:data:`~streamdx.messaging.codec.ORIGIN_HEADER`)
of the input it derives from: in per-record mode the record's; in batch mode the input with
the same idempotency key when there is one (a label and its beat), else the key's last
record of the batch. A record without the header contributes its own timestamp.

Checkpoint interval
-------------------
With ``checkpoint_interval_s`` = 0 (the default) steps 5-6 run after every batch. With an
interval, a batch still publishes its outputs (step 4: latency is unchanged), but the touched
states and the consumed offsets are only *kept*; every interval (and before a rebalance gives
partitions away, before a dirty state leaves the in-memory cache, and when the worker stops)
all kept states are checkpointed with their offsets, then the offsets are committed. A key
with a record per second is then written once per interval instead of once per record. After
a crash, a replacement replays at most one interval of records from the last checkpoint:
being deterministic, the handler republishes identical outputs with the same idempotency
keys (the same at-least-once contract as a crash between steps 4 and 5).

Delivery is at-least-once on outputs: a crash between 4 and 5 replays the batch and the
handler, being deterministic, emits the same messages with the same idempotency keys,
which downstream consumers de-duplicate.

Batch mode
----------
A :data:`BatchHandler` is called once per ``getmany`` batch with one :class:`KeyBatch` per
key: the key's state and its validated, not-yet-applied messages of the batch in offset
order (steps 1 and 2 happen first, exactly as in per-record mode). It returns one
:class:`Handled` per key, in the same order: the key's state after all its messages and
their outputs in order. This lets a model worker run one inference call for every key of a
batch. Steps 4–6 are unchanged.

Error policy: a batch handler must not mutate the states it is given (it may be called again
with them). If it raises, or returns a result of the wrong length, the worker falls back to
**one call per key**; a key whose call raises again is replayed **one message per call**,
so only the records that raise go to the dead-letter topic (reason: ``HandlerRejected.reason``
or ``handler_error:<type>``) while the key's state advances over the others, and every other
key's records proceed. The fallback costs extra calls only for a batch that holds a bad
record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamdx.logs import log_fields
from streamdx.messaging.codec import OutgoingRecord, PoisonMessage, decode_message, encode_message, record_origin_ms
from streamdx.messaging.errors import Backpressure, BrokerUnavailable
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import WorkerMetrics
from streamdx.schemas.base import Message
from streamdx.schemas.topics import dlq_topic
from streamdx.state_store import Checkpoint, StateStore

__all__ = [
    "BatchHandler",
    "Handled",
    "Handler",
    "HandlerRejected",
    "KeyBatch",
    "StateCodec",
    "StreamWorker",
    "dead_letter",
]

In = TypeVar("In", bound=Message)
S = TypeVar("S")
log = logging.getLogger("streamdx.worker")


class StateCodec(Protocol[S]):
    """Serialises a handler's per-key state (versioned by the codec itself)."""

    def dumps(self, state: S) -> bytes: ...

    def loads(self, blob: bytes) -> S: ...


@dataclass(frozen=True, slots=True)
class Handled(Generic[S]):
    """What a handler returns: the key's new state and the messages to publish."""

    state: S | None
    outputs: Sequence[Message] = ()


Handler = Callable[[In, S | None], Awaitable[Handled[S]]]


@dataclass(frozen=True, slots=True)
class KeyBatch(Generic[In, S]):
    """One key's part of a batch: its state before the batch and its messages in offset order."""

    key: str
    state: S | None
    messages: Sequence[In]


#: ``async (key_batches) -> [Handled per key, same order]`` (see "Batch mode" in the module doc).
BatchHandler = Callable[[Sequence[KeyBatch[In, S]]], Awaitable[Sequence[Handled[S]]]]


class HandlerRejected(ValueError):
    """Raised by a handler for a record it can never process; the record goes to the DLQ."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Abandoned(Exception):
    """The worker was stopped while it waited for Redis: the batch in progress is dropped, not committed."""


@dataclass(slots=True)
class _Entry(Generic[S]):
    state: S | None
    partition: int
    offset: int


def dead_letter(record: ConsumerRecord, group: str, reason: str, detail: str) -> OutgoingRecord:
    """The DLQ copy of ``record``: original key/value, reason and source in headers."""
    headers = [(k, v) for k, v in (record.headers or ())]
    headers += [
        ("dlq-reason", reason.encode()),
        ("dlq-detail", detail[:500].encode("utf-8", "replace")),
        ("dlq-source-topic", record.topic.encode()),
        ("dlq-source-partition", str(record.partition).encode()),
        ("dlq-source-offset", str(record.offset).encode()),
        ("dlq-group", group.encode()),
    ]
    return OutgoingRecord(dlq_topic(record.topic), record.key, record.value or b"", tuple(headers))


@dataclass
class _Pending(Generic[In, S]):
    """A key's validated records of the batch in progress (batch mode)."""

    key: str
    prev: _Entry[S] | None
    messages: list[In] = field(default_factory=list)
    records: list[ConsumerRecord] = field(default_factory=list)


@dataclass
class _BatchResult:
    outputs: list[OutgoingRecord] = field(default_factory=list)
    touched: dict[str, _Entry[Any]] = field(default_factory=dict)
    commits: dict[TopicPartition, int] = field(default_factory=dict)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: StreamWorker[Any, Any]) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._worker.on_assigned(assigned)


class StreamWorker(Generic[In, S]):
    """Consume ``topic`` in ``group`` with a typed, stateful handler (see module doc).

    Parameters
    ----------
    topic, group : str
        Topic consumed and consumer group.
    model : type
        Message model of the topic.
    handler : Handler or None
        ``async (msg, state | None) -> Handled``, called per record.
    batch_handler : BatchHandler or None
        ``async ([KeyBatch, ...]) -> [Handled, ...]``, called once per batch (give exactly
        one of ``handler`` and ``batch_handler``).
    codec : StateCodec or None
        State serialiser; ``None`` for a stateless handler (offsets are still checkpointed
        per key so redeliveries are skipped).
    publisher, store, metrics
        Injected dependencies.
    bootstrap : str
        Kafka bootstrap servers for the consumer.
    """

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        model: type[In],
        handler: Handler[In, S] | None = None,
        batch_handler: BatchHandler[In, S] | None = None,
        codec: StateCodec[S] | None,
        publisher: Publisher,
        store: StateStore,
        metrics: WorkerMetrics,
        bootstrap: str,
        batch_max_records: int = 500,
        batch_timeout_ms: int = 200,
        retry_backoff_s: tuple[float, float] = (0.2, 5.0),
        max_cached_keys: int = 50_000,
        checkpoint_interval_s: float = 0.0,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.topic = topic
        self.group = group
        self._model = model
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self._handler = handler
        self._batch_handler = batch_handler
        self._codec = codec
        self._publisher = publisher
        self._store = store
        self._metrics = metrics
        self._consumed = metrics.consumed.labels(topic=topic, group=group)  # per record: look the child up once
        self._bootstrap = bootstrap
        self._max_records = batch_max_records
        self._timeout_ms = batch_timeout_ms
        self._backoff = retry_backoff_s
        self._cache: OrderedDict[str, _Entry[S]] = OrderedDict()  # LRU; checkpoints are in Redis
        self._max_cached = max_cached_keys
        self._interval = checkpoint_interval_s
        self._session_timeout_ms = session_timeout_ms
        self._dirty: dict[str, _Entry[S]] = {}  # applied, not yet checkpointed (interval mode)
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_flush = time.monotonic()
        self._stop = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = False
        self.batches = 0

    # -- rebalance hooks -------------------------------------------------------------
    async def on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Wait for the batch in progress, checkpoint and commit what is kept, then forget the keys."""
        async with self._batch_lock:
            await self._flush()
            parts = {tp.partition for tp in revoked if tp.topic == self.topic}
            for key in [k for k, e in self._cache.items() if e.partition in parts]:
                del self._cache[key]

    async def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Prefetch the checkpoints of the keys last seen on the assigned partitions."""
        for tp in assigned:
            if tp.topic != self.topic:
                continue
            keys = await self._store.keys_for_partition(tp.partition)
            found = await self._store.load_many(keys)
            await self._store.forget(tp.partition, keys - found.keys())
            for key, cp in found.items():
                if cp.partition == tp.partition and key not in self._cache:
                    self._cache[key] = self._entry_from_checkpoint(cp)
            self._evict()
        self.ready = True

    # -- loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in progress is finished and committed."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group,
            client_id=f"{self.group}-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # a worker that died without leaving the group holds its partitions this long
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(100, min(3000, self._session_timeout_ms // 3)),
        )
        self._stop = stop
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        await consumer.start()
        self._consumer = consumer
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=self._timeout_ms, max_records=self._max_records)
                if not batch:
                    if (self._dirty or self._uncommitted) and time.monotonic() - self._last_flush >= self._interval:
                        async with self._batch_lock:  # a quiet topic: save what is kept once the interval is up
                            if not await self._flush():
                                break
                    await self._update_lag(consumer)
                    continue
                async with self._batch_lock:
                    started = time.perf_counter()
                    done = await self._process_batch(batch, stop)
                    if not done:
                        break  # stopping while the broker or Redis was down: leave it to the next owner
                    self._metrics.batch_seconds.labels(group=self.group).observe(time.perf_counter() - started)
                    self.batches += 1
                await self._update_lag(consumer)
            else:  # stopped between batches (not while a batch could not be published): save what is kept
                async with self._batch_lock:
                    await self._flush()
        finally:
            self.ready = False
            self._consumer = None
            await consumer.stop()

    async def _process_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> bool:
        result = _BatchResult()
        try:
            if self._batch_handler is not None:
                await self._process_keyed(batch, self._batch_handler, result)
            else:
                for tp, records in batch.items():
                    for record in records:
                        await self._process_record(record, result)
                        result.commits[tp] = record.offset + 1
        except _Abandoned:
            return False
        if not await self._retry(lambda: self._publisher.publish_records(result.outputs), stop, "publish"):
            return False
        self._dirty.update(result.touched)
        self._uncommitted.update(result.commits)
        due = self._interval <= 0 or time.monotonic() - self._last_flush >= self._interval
        if due or len(self._cache) > self._max_cached:  # dirty states are not evicted: save them first
            return await self._flush()
        return True

    async def _flush(self) -> bool:
        """Steps 5-6 for everything kept: checkpoint the dirty states with their offsets, evict,
        commit. ``False`` when stopping while Redis was down (nothing committed)."""
        self._last_flush = time.monotonic()
        if self._dirty:
            checkpoints = {
                key: Checkpoint(
                    state=None if e.state is None or self._codec is None else self._codec.dumps(e.state),
                    partition=e.partition,
                    offset=e.offset,
                )
                for key, e in self._dirty.items()
            }
            ok = await self._retry(lambda: self._store.save_many(checkpoints), self._stop, "checkpoint")
            if not ok:
                return False
            self._dirty.clear()
        self._evict()
        commits, self._uncommitted = self._uncommitted, {}
        if commits and self._consumer is not None:
            try:
                await self._consumer.commit(commits)
            except KafkaError as exc:  # checkpoints in Redis still make the replay skip these records
                log.warning("commit failed", extra=log_fields(group=self.group, error_type=type(exc).__name__))
        return True

    async def _admit(
        self, record: ConsumerRecord, result: _BatchResult
    ) -> tuple[str, In, _Entry[S] | None] | None:
        """Steps 1–2 for one record: the key, message and entry to apply it to, or ``None``
        when the record was dead-lettered or was already applied."""
        self._consumed.inc()
        key = record.key.decode("utf-8", "replace") if record.key else ""
        try:
            msg = decode_message(record.value, record.headers, self._model)
        except PoisonMessage as exc:
            self._to_dlq(record, exc.reason, exc.detail, result)
            return None
        if msg.key() != key:
            self._to_dlq(record, "key_mismatch", f"record key {key!r} is not the message key", result)
            return None
        entry = self._cache.get(key)
        if entry is None:
            cp = await self._load(key)
            entry = self._entry_from_checkpoint(cp) if cp is not None else None
            if entry is not None:  # the checkpointed state: loaded once per batch, not per record
                self._cache[key] = entry
        if (entry is not None and entry.partition == record.partition and record.offset <= entry.offset
                and not self._log_recreated(record, entry.offset)):
            self._metrics.skipped_replays.labels(topic=self.topic, group=self.group).inc()
            return None
        return key, msg, entry

    async def _load(self, key: str) -> Checkpoint | None:
        """The key's checkpoint, retried while Redis is unavailable (:class:`_Abandoned` once stopping)."""
        found: list[Checkpoint | None] = []

        async def load() -> None:
            found.append(await self._store.load(key))

        if not await self._retry(load, self._stop, "checkpoint load"):
            raise _Abandoned
        return found[0]

    def _log_recreated(self, record: ConsumerRecord, checkpointed: int) -> bool:
        """Whether ``record``'s partition cannot hold the checkpointed offset: it is at or beyond the
        high watermark of the fetch that returned the record (see step 2 of the module doc)."""
        consumer = self._consumer
        high = consumer.highwater(TopicPartition(record.topic, record.partition)) if consumer is not None else None
        if high is None or checkpointed < high:
            return False
        log.warning(
            "checkpoint beyond the end of the partition: the topic was re-created, applying its records",
            extra=log_fields(group=self.group, partition=record.partition, offset=record.offset,
                             checkpoint_offset=checkpointed, high_watermark=high),
        )
        return True

    def _store_entry(self, key: str, entry: _Entry[S], result: _BatchResult) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        result.touched[key] = entry

    def _handler_failed(self, record: ConsumerRecord, exc: Exception, result: _BatchResult) -> None:
        """Dead-letter a record whose handler raised (poison by content)."""
        reason = exc.reason if isinstance(exc, HandlerRejected) else f"handler_error:{type(exc).__name__}"
        if not isinstance(exc, HandlerRejected | ValueError):
            log.exception("handler failed", extra=log_fields(group=self.group, offset=record.offset))
        self._to_dlq(record, reason, str(exc), result)

    async def _process_record(self, record: ConsumerRecord, result: _BatchResult) -> None:
        admitted = await self._admit(record, result)
        if admitted is None:
            return
        key, msg, entry = admitted
        handler = self._handler
        assert handler is not None
        prev_state = entry.state if entry is not None else None
        self._store_entry(key, await self._handle_one(lambda: handler(msg, prev_state), prev_state, record, result),
                          result)  # fmt: skip

    async def _handle_one(
        self, call: Callable[[], Awaitable[Handled[S]]], state: S | None, record: ConsumerRecord, result: _BatchResult
    ) -> _Entry[S]:
        """One record through the handler: its outputs, or the DLQ keeping ``state`` if it raises."""
        try:
            handled = await call()
        except Exception as exc:  # poison by content: DLQ it, keep the key's state
            self._handler_failed(record, exc, result)
            return _Entry(state, record.partition, record.offset)
        origin = record_origin_ms(record.headers, record.timestamp)
        result.outputs.extend(encode_message(m, origin) for m in handled.outputs)
        return _Entry(handled.state, record.partition, record.offset)

    async def _process_keyed(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], handler: BatchHandler[In, S], result: _BatchResult
    ) -> None:
        """Batch mode: admit every record, then one handler call for all keys (see module doc)."""
        pending: dict[str, _Pending[In, S]] = {}
        for tp, records in batch.items():
            for record in records:
                admitted = await self._admit(record, result)
                result.commits[tp] = record.offset + 1
                if admitted is None:
                    continue
                key, msg, entry = admitted
                p = pending.get(key)
                if p is None:
                    p = pending[key] = _Pending(key, entry)
                p.messages.append(msg)
                p.records.append(record)
        if not pending:
            return
        groups = list(pending.values())
        try:
            handled = await handler([self._key_batch(p.key, p.prev, p.messages) for p in groups])
            if len(handled) != len(groups):
                raise RuntimeError(f"batch handler returned {len(handled)} results for {len(groups)} keys")
        except Exception as exc:
            log.warning(
                "batch handler failed, retrying per key",
                extra=log_fields(group=self.group, count=len(groups), error_type=type(exc).__name__),
            )
            for p in groups:
                await self._process_key(p, handler, result)
            return
        for p, h in zip(groups, handled, strict=True):
            self._apply(p, h, result)

    @staticmethod
    def _key_batch(key: str, entry: _Entry[S] | None, messages: Sequence[In]) -> KeyBatch[In, S]:
        return KeyBatch(key, entry.state if entry is not None else None, tuple(messages))

    def _apply(self, p: _Pending[In, S], handled: Handled[S], result: _BatchResult) -> None:
        last = p.records[-1]
        default = record_origin_ms(last.headers, last.timestamp)
        origins = {m.idempotency_key(): record_origin_ms(r.headers, r.timestamp)
                   for m, r in zip(p.messages, p.records, strict=True)}  # fmt: skip
        result.outputs.extend(encode_message(m, origins.get(m.idempotency_key(), default)) for m in handled.outputs)
        self._store_entry(p.key, _Entry(handled.state, last.partition, last.offset), result)

    async def _process_key(self, p: _Pending[In, S], handler: BatchHandler[In, S], result: _BatchResult) -> None:
        """Fallback for one key: all its messages in one call, else one message per call."""
        if len(p.messages) > 1:
            try:
                (handled,) = await handler([self._key_batch(p.key, p.prev, p.messages)])
            except Exception:  # isolate the record(s) that fail, one call each below
                log.debug("key batch failed, retrying per message", extra=log_fields(group=self.group))
            else:
                self._apply(p, handled, result)
                return
        async def single(state: S | None, msg: In) -> Handled[S]:
            (one,) = await handler([KeyBatch(p.key, state, (msg,))])
            return one

        entry = p.prev
        for msg, record in zip(p.messages, p.records, strict=True):
            state = entry.state if entry is not None else None
            entry = await self._handle_one(lambda: single(state, msg), state, record, result)  # noqa: B023
        assert entry is not None
        self._store_entry(p.key, entry, result)

    def _evict(self) -> None:
        """Keep at most ``max_cached_keys`` states in memory (least recently used go first; a
        state not yet checkpointed stays until the next flush)."""
        if len(self._cache) <= self._max_cached:
            return
        for key in list(self._cache):
            if len(self._cache) <= self._max_cached:
                break
            if key not in self._dirty:
                del self._cache[key]

    def _to_dlq(self, record: ConsumerRecord, reason: str, detail: str, result: _BatchResult) -> None:
        self._metrics.dlq.labels(topic=record.topic, reason=reason.split(":")[0]).inc()
        log.warning(
            "dead-lettered",
            extra=log_fields(topic=record.topic, partition=record.partition, offset=record.offset, reason=reason),
        )
        result.outputs.append(dead_letter(record, self.group, reason, detail))

    def _entry_from_checkpoint(self, cp: Checkpoint) -> _Entry[S]:
        state = None
        if cp.state is not None and self._codec is not None:
            try:
                state = self._codec.loads(cp.state)
            except ValueError:
                log.warning("unreadable state checkpoint, starting fresh", extra=log_fields(group=self.group))
        return _Entry(state, cp.partition, cp.offset)

    async def _retry(self, op: Callable[[], Awaitable[None]], stop: asyncio.Event, what: str) -> bool:
        delay = self._backoff[0]
        attempt = 0
        while True:
            try:
                await op()
                return True
            except (
                BrokerUnavailable, Backpressure, RedisConnectionError, RedisTimeoutError, OSError, TimeoutError
            ) as exc:
                attempt += 1
                log.warning(
                    f"{what} failed, retrying",
                    extra=log_fields(group=self.group, attempt=attempt, retry_in_s=delay,
                                     error_type=type(exc).__name__),
                )
                if stop.is_set():
                    return False
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    return False
                except TimeoutError:
                    delay = min(delay * 2, self._backoff[1])

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            pos = await consumer.position(tp)
            self._metrics.consumer_lag.labels(
                topic=tp.topic, partition=str(tp.partition), group=self.group
            ).set(max(0, high - pos))
