"""The messaging layer on the real broker and Redis: dead letters, checkpoints, crash/resume."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry
from pydantic import Field
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streamdx.messaging.admin import ensure_topics
from streamdx.messaging.codec import encode_message
from streamdx.messaging.publisher import Publisher
from streamdx.messaging.worker import Handled, StreamWorker
from streamdx.metrics import WorkerMetrics
from streamdx.schemas.base import Message
from streamdx.schemas.topics import dlq_topic
from streamdx.state_store import Checkpoint, StateStore
from tests.conftest import StackInfo
from tests.integration.kafka_reading import group_caught_up, read_topic

pytestmark = pytest.mark.integration


class AddV1(Message):
    TOPIC: ClassVar[str] = "test.add"
    VERSION: ClassVar[int] = 1
    key_id: str
    seq: int = Field(ge=0)
    value: int

    def key(self) -> str:
        return self.key_id

    def idempotency_key(self) -> str:
        return f"{self.key_id}:{self.seq}"


class TotalV1(Message):
    TOPIC: ClassVar[str] = "test.total"
    VERSION: ClassVar[int] = 1
    key_id: str
    seq: int
    total: int

    def key(self) -> str:
        return self.key_id

    def idempotency_key(self) -> str:
        return f"{self.key_id}:{self.seq}"


class IntCodec:
    def dumps(self, state: int) -> bytes:
        return json.dumps({"v": 1, "total": state}).encode()

    def loads(self, blob: bytes) -> int:
        d = json.loads(blob)
        if d.get("v") != 1:
            raise ValueError("other version")
        return int(d["total"])


async def add_handler(msg: AddV1, state: int | None) -> Handled[int]:
    if msg.value == 13:
        raise ValueError("13 is unlucky")
    total = (state or 0) + msg.value
    return Handled(total, [TotalV1(key_id=msg.key_id, seq=msg.seq, total=total)])


class Crash(BaseException):
    """Simulated process death (not an Exception: nothing in the worker may swallow it)."""


class CrashingStore(StateStore):
    """Dies before or after the n-th checkpoint write that touches keys starting with ``prefix``
    (the topic also holds earlier tests' records, which a new group reads first)."""

    def __init__(self, redis: Redis, ns: str, crash_at: int, after_write: bool, prefix: str) -> None:
        super().__init__(redis, ns)
        self.prefix = prefix
        self.calls = 0
        self.crash_at = crash_at
        self.after_write = after_write
        self.dead = False

    async def save_many(self, checkpoints: dict[str, Checkpoint]) -> None:  # type: ignore[override]
        if self.dead:  # a dead process writes nothing more, even if the crash surfaced elsewhere first
            raise Crash
        self.calls += any(k.startswith(self.prefix) for k in checkpoints)
        self.dead = self.calls == self.crash_at
        if self.dead and not self.after_write:
            raise Crash
        await super().save_many(checkpoints)
        if self.dead:
            raise Crash


class RedisDownForLoads(StateStore):
    """Redis is unavailable for the first ``failures`` checkpoint loads of keys starting with ``prefix``."""

    def __init__(self, redis: Redis, ns: str, prefix: str, failures: int) -> None:
        super().__init__(redis, ns)
        self.prefix = prefix
        self.failures = failures

    async def load(self, key: str) -> Checkpoint | None:
        if key.startswith(self.prefix) and self.failures > 0:
            self.failures -= 1
            raise RedisConnectionError("Redis is restarting")
        return await super().load(key)


async def produce(pub: Publisher, msgs: list[AddV1]) -> None:
    await pub.publish_many(msgs)


async def four_keys_thirty_records(pub: Publisher, tag: str) -> tuple[str, str, list[str], list[AddV1]]:
    """Publish 30 records (even values: never the rejected 13) for each of 4 fresh keys; returns the
    key prefix, a fresh consumer group, the keys and the records."""
    prefix = f"{tag}{uuid.uuid4().hex[:6]}"
    keys = [f"{prefix}-{k}" for k in range(4)]
    msgs = [AddV1(key_id=k, seq=i, value=2 * i + 2) for i in range(30) for k in keys]
    await produce(pub, msgs)
    return prefix, f"g-{prefix}", keys, msgs


def make_worker(stack: StackInfo, group: str, pub: Publisher, store: StateStore, metrics: WorkerMetrics,
                max_cached_keys: int = 1000, checkpoint_interval_s: float = 0.0) -> StreamWorker[AddV1, int]:
    return StreamWorker(
        topic=AddV1.TOPIC, group=group, model=AddV1, handler=add_handler, codec=IntCodec(), publisher=pub,
        store=store, metrics=metrics, bootstrap=stack.kafka_bootstrap, batch_max_records=7, batch_timeout_ms=100,
        max_cached_keys=max_cached_keys, checkpoint_interval_s=checkpoint_interval_s,
        session_timeout_ms=6000,  # the broker's minimum: a crashed worker's partitions move on sooner
    )


async def run_until(worker: StreamWorker[AddV1, int], predicate: object, timeout_s: float = 30.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(int(timeout_s * 10)):
            if await predicate():  # type: ignore[operator]
                break
            if task.done():
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)


async def totals(stack: StackInfo, prefix: str) -> list[TotalV1]:
    recs = [r for r in await read_topic(stack.kafka_bootstrap, TotalV1.TOPIC) if r.key.decode().startswith(prefix)]
    return [TotalV1.model_validate_json(r.value) for r in sorted(recs, key=lambda r: (r.partition, r.offset))]


@pytest.fixture(scope="module", autouse=True)
async def topics(stack: StackInfo) -> None:
    await ensure_topics(stack.kafka_bootstrap, ["test.add", "test.total", dlq_topic("test.add")], 3)


async def test_poison_messages_go_to_dlq_with_reason(stack: StackInfo, redis: Redis) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"p{uuid.uuid4().hex[:6]}"
    key = f"{prefix}-a"
    good = [AddV1(key_id=key, seq=i, value=i) for i in range(5)]
    await produce(pub, good[:2])
    bad_json = encode_message(good[0])
    await pub.publish_records([
        type(bad_json)(AddV1.TOPIC, key.encode(), b"{not json", bad_json.headers),
        type(bad_json)(AddV1.TOPIC, key.encode(), b'{"key_id": "x", "seq": -1, "value": 1}', bad_json.headers),
        type(bad_json)(AddV1.TOPIC, key.encode(), bad_json.value, (("schema", b"test.add/v9"),)),
    ])
    await produce(pub, [AddV1(key_id=key, seq=2, value=13)])  # the handler raises
    await produce(pub, good[3:])
    worker = make_worker(stack, f"g-{prefix}", pub, StateStore(redis, f"g-{prefix}"), metrics)

    async def done() -> bool:
        return len(await totals(stack, prefix)) >= 4

    await run_until(worker, done)
    out = await totals(stack, prefix)
    assert [(t.seq, t.total) for t in out] == [(0, 0), (1, 1), (3, 4), (4, 8)]
    dlq = [r for r in await read_topic(stack.kafka_bootstrap, dlq_topic(AddV1.TOPIC)) if r.key == key.encode()]
    reasons = [dict(r.headers)["dlq-reason"].decode() for r in sorted(dlq, key=lambda r: r.offset)]
    assert reasons == ["validation", "validation", "schema_mismatch", "handler_error:ValueError"]
    assert all(dict(r.headers)["dlq-source-topic"] == b"test.add" for r in dlq)
    await pub.stop()


@pytest.mark.parametrize("interval", [0.0, 0.3], ids=["checkpoint-every-batch", "checkpoint-interval"])
@pytest.mark.parametrize("after_write", [False, True], ids=["crash-before-checkpoint", "crash-before-commit"])
async def test_replacement_worker_resumes_without_loss_or_double_apply(
    stack: StackInfo, redis: Redis, after_write: bool, interval: float
) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix, group, keys, msgs = await four_keys_thirty_records(pub, "c")
    crashing = CrashingStore(redis, group, crash_at=3 if interval == 0 else 1, after_write=after_write, prefix=prefix)
    dying = make_worker(stack, group, pub, crashing, metrics, checkpoint_interval_s=interval)
    with pytest.raises(Crash):
        await dying.run(asyncio.Event())
    before = await totals(stack, prefix)
    # with an interval, the crash at the first checkpoint may come after every output was published
    assert 0 < len(before) <= len(msgs) if interval else 0 < len(before) < len(msgs)
    # a small state cache: keys are evicted and reloaded from their checkpoints between batches
    replacement = make_worker(stack, group, pub, StateStore(redis, group), metrics, max_cached_keys=2,
                              checkpoint_interval_s=interval)

    async def complete() -> bool:
        """Every output there, every key's final state checkpointed, and the replacement has consumed
        the whole topic (the dying worker may have published and checkpointed everything before it
        died: the replacement must still meet the records whose commit was lost)."""
        got = await totals(stack, prefix)
        if not {(t.key_id, t.seq) for t in got} >= {(m.key_id, m.seq) for m in msgs}:
            return False
        cps = [await StateStore(redis, group).load(k) for k in keys]
        if not all(cp is not None and IntCodec().loads(cp.state or b"") == 30 * 31 for cp in cps):
            return False
        return await group_caught_up(stack.kafka_bootstrap, group, AddV1.TOPIC)

    await run_until(replacement, complete)
    out = await totals(stack, prefix)
    expected = {(k, i): (i + 1) * (i + 2) for k in keys for i in range(30)}
    # every output is right (state never applied twice) and none is missing
    assert {(t.key_id, t.seq): t.total for t in out} == expected
    assert all(t.total == expected[(t.key_id, t.seq)] for t in out)
    dupes = len(out) - len(expected)
    skipped = metrics.registry.get_sample_value(
        "streamdx_replayed_messages_skipped_total", {"topic": "test.add", "group": group}
    ) or 0
    if after_write:  # checkpoint written, Kafka commit lost: redelivered records are skipped by offset
        assert dupes == 0 and skipped > 0
    else:  # outputs published, checkpoint lost: the batch is replayed; duplicates are identical
        assert dupes > 0
    for key in keys:
        cp = await StateStore(redis, group).load(key)
        assert cp is not None and IntCodec().loads(cp.state or b"") == 30 * 31
    await pub.stop()


async def test_checkpoint_interval_writes_kept_states_once_and_on_stop(stack: StackInfo, redis: Redis) -> None:
    """With an interval longer than the run, the states of many batches are written once, when the
    worker stops, with the offsets of their last records; outputs were published batch by batch."""
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix, group, keys, msgs = await four_keys_thirty_records(pub, "i")
    counting = CrashingStore(redis, group, crash_at=-1, after_write=False, prefix=prefix)  # never crashes: counts
    worker = make_worker(stack, group, pub, counting, metrics, checkpoint_interval_s=120.0)

    async def complete() -> bool:
        return len(await totals(stack, prefix)) >= len(msgs)

    await run_until(worker, complete)
    assert worker.batches > 10  # 120 records of ours in batches of at most 7
    assert counting.calls == 1, "kept states were written more than once (or not at the stop)"
    out = await totals(stack, prefix)
    assert {(t.key_id, t.seq): t.total for t in out} == {(k, i): (i + 1) * (i + 2) for k in keys for i in range(30)}
    for key in keys:
        cp = await StateStore(redis, group).load(key)
        assert cp is not None and IntCodec().loads(cp.state or b"") == 30 * 31
    await pub.stop()


async def test_checkpoint_beyond_the_partition_end_means_a_recreated_topic_not_a_replay(
    stack: StackInfo, redis: Redis
) -> None:
    """A topic deleted and created again (an in-memory broker restarted) starts its offsets afresh,
    below those of the streams' checkpoints: a checkpoint at or beyond the partition's end cannot
    be of this log, so the stream's new records are applied to its state, not skipped as replays."""
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"r{uuid.uuid4().hex[:6]}"
    key, group = f"{prefix}-a", f"g-{prefix}"
    await produce(pub, [AddV1(key_id=key, seq=i, value=i + 1) for i in range(3)])
    (partition,) = {r.partition for r in await read_topic(stack.kafka_bootstrap, AddV1.TOPIC) if r.key == key.encode()}
    store = StateStore(redis, group)  # the key's total was 100 after offset 10**9 of the topic's earlier log
    await store.save_many({key: Checkpoint(IntCodec().dumps(100), partition, 10**9)})
    worker = make_worker(stack, group, pub, store, metrics)

    async def applied() -> bool:
        return len(await totals(stack, prefix)) >= 3

    await run_until(worker, applied)
    assert [(t.seq, t.total) for t in await totals(stack, prefix)] == [(0, 101), (1, 103), (2, 106)]
    cp = await store.load(key)
    assert cp is not None and cp.offset < 10**9 and IntCodec().loads(cp.state or b"") == 106
    await pub.stop()


async def test_a_key_met_while_redis_is_down_waits_for_its_checkpoint(stack: StackInfo, redis: Redis) -> None:
    """A key whose state is not in memory needs its checkpoint from Redis: while Redis is unavailable
    the worker waits for it (retried with back-off) instead of crashing, then applies the records."""
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"l{uuid.uuid4().hex[:6]}"
    await produce(pub, [AddV1(key_id=f"{prefix}-a", seq=i, value=i + 1) for i in range(3)])
    store = RedisDownForLoads(redis, f"g-{prefix}", prefix, failures=3)
    worker = make_worker(stack, f"g-{prefix}", pub, store, metrics)

    async def applied() -> bool:
        return len(await totals(stack, prefix)) >= 3

    await run_until(worker, applied)
    assert [(t.seq, t.total) for t in await totals(stack, prefix)] == [(0, 1), (1, 3), (2, 6)]
    assert store.failures == 0
    await pub.stop()


async def test_stopped_while_waiting_for_redis_the_worker_returns_having_applied_nothing(
    stack: StackInfo, redis: Redis
) -> None:
    """Stopped while it waits for a checkpoint, the worker drops the batch (its next owner takes it up):
    it returns, neither crashing nor hanging, with no output and no checkpoint of the key."""
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"s{uuid.uuid4().hex[:6]}"
    await produce(pub, [AddV1(key_id=f"{prefix}-a", seq=0, value=1)])
    store = RedisDownForLoads(redis, f"g-{prefix}", prefix, failures=10**6)
    worker = make_worker(stack, f"g-{prefix}", pub, store, metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(300):  # until the worker has met our key (it reads the earlier tests' records first)
        if store.failures < 10**6 or task.done():
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 20)  # returns: no crash, no hang
    assert store.failures < 10**6
    assert await totals(stack, prefix) == [] and await StateStore(redis, f"g-{prefix}").load(f"{prefix}-a") is None
    await pub.stop()


async def test_scale_out_and_in_rebalances_without_loss_or_double_apply(stack: StackInfo, redis: Redis) -> None:
    """A second worker joins the group mid-stream and the first one leaves: partitions move
    twice, the rebalance hooks hand state over through Redis, and every total stays exact."""
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"r{uuid.uuid4().hex[:6]}"
    group = f"g-{prefix}"
    keys = [f"{prefix}-{k}" for k in range(6)]  # spread over the 3 partitions
    expected = {(k, i): (i + 1) * (i + 2) for k in keys for i in range(45)}

    async def feed(seqs: range) -> None:
        for i in seqs:
            await produce(pub, [AddV1(key_id=k, seq=i, value=2 * i + 2) for k in keys])
            await asyncio.sleep(0.02)

    a = make_worker(stack, group, pub, StateStore(redis, group), metrics)
    b = make_worker(stack, group, pub, StateStore(redis, group), metrics)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await feed(range(0, 15))
    task_b = asyncio.create_task(b.run(stop_b))  # scale out: partitions are split
    await feed(range(15, 30))
    for _ in range(300):
        if b.ready and b.batches > 0:
            break
        await asyncio.sleep(0.1)
    stop_a.set()  # scale in: a finishes its batch, checkpoints, commits and leaves
    await task_a
    await feed(range(30, 45))
    for _ in range(600):
        got = {(t.key_id, t.seq) for t in await totals(stack, prefix)}
        if got >= set(expected):
            break
        await asyncio.sleep(0.1)
    stop_b.set()
    await task_b
    out = await totals(stack, prefix)
    assert a.batches > 0 and b.batches > 0, "both workers must have processed part of the stream"
    assert {(t.key_id, t.seq) for t in out} == set(expected)
    assert all(t.total == expected[(t.key_id, t.seq)] for t in out), "a state was applied twice or lost"
    await pub.stop()
