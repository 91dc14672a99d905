"""The messaging layer's batch mode on the real broker and Redis: one handler call for many keys,
the same dead-letter, redelivery and crash/resume guarantees as per-record mode, and the
documented fallback (per key, then per record) when the batch handler raises."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from streamdx.messaging.admin import ensure_topics
from streamdx.messaging.codec import ORIGIN_HEADER, encode_message
from streamdx.messaging.publisher import Publisher
from streamdx.messaging.worker import Handled, HandlerRejected, KeyBatch, StreamWorker
from streamdx.metrics import WorkerMetrics
from streamdx.schemas.topics import dlq_topic
from streamdx.state_store import StateStore
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_topic
from tests.integration.test_worker import (
    AddV1,
    Crash,
    CrashingStore,
    IntCodec,
    TotalV1,
    make_worker,
    produce,
    run_until,
    totals,
)

pytestmark = pytest.mark.integration


class BatchAdd:
    """Running totals per key, one call per batch; 13 is rejected, -1 crashes the handler."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (keys, messages) per call

    async def __call__(self, batches: Sequence[KeyBatch[AddV1, int]]) -> list[Handled[int]]:
        self.calls.append((len(batches), sum(len(kb.messages) for kb in batches)))
        out = []
        for kb in batches:
            total = kb.state or 0
            msgs = []
            for m in kb.messages:
                if m.value == 13:
                    raise HandlerRejected("unlucky", f"{m.key_id}:{m.seq}")
                if m.value == -1:
                    raise RuntimeError("handler bug")
                total += m.value
                msgs.append(TotalV1(key_id=m.key_id, seq=m.seq, total=total))
            out.append(Handled(total, msgs))
        return out


@pytest.fixture(scope="module", autouse=True)
async def topics(stack: StackInfo) -> None:
    await ensure_topics(stack.kafka_bootstrap, ["test.add", "test.total", dlq_topic("test.add")], 3)


def make_batch_worker(stack: StackInfo, group: str, pub: Publisher, store: StateStore, metrics: WorkerMetrics,
                      handler: BatchAdd, max_records: int = 50) -> StreamWorker[AddV1, int]:  # fmt: skip
    return StreamWorker(
        topic=AddV1.TOPIC, group=group, model=AddV1, batch_handler=handler, codec=IntCodec(), publisher=pub,
        store=store, metrics=metrics, bootstrap=stack.kafka_bootstrap, batch_max_records=max_records,
        batch_timeout_ms=100, session_timeout_ms=6000,
    )


def test_exactly_one_handler_kind() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher("127.0.0.1:1", metrics)
    store = StateStore(Redis(), "unused")
    with pytest.raises(ValueError, match="exactly one"):
        StreamWorker(topic="t", group="g", model=AddV1, codec=None, publisher=pub, store=store, metrics=metrics,
                     bootstrap="127.0.0.1:1")  # fmt: skip


async def test_batch_mode_one_call_for_many_keys_and_bad_records_isolated(stack: StackInfo, redis: Redis) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"b{uuid.uuid4().hex[:6]}"
    keys = [f"{prefix}-{k}" for k in range(6)]
    values = {(k, i): 2 * i + 2 for k in keys for i in range(10)}
    values[(keys[1], 4)] = 13  # rejected by the handler → DLQ, key 1 continues
    values[(keys[2], 7)] = -1  # the handler crashes → DLQ, key 2 continues
    msgs = [AddV1(key_id=k, seq=i, value=values[(k, i)]) for i in range(10) for k in keys]
    await produce(pub, msgs)
    good = encode_message(msgs[0])
    await pub.publish_records([  # poison by form: never reaches the handler
        type(good)(AddV1.TOPIC, keys[3].encode(), b"{not json", good.headers),
        type(good)(AddV1.TOPIC, keys[3].encode(), good.value, (("schema", b"test.add/v9"),)),
    ])
    handler = BatchAdd()
    group = f"g-{prefix}"
    worker = make_batch_worker(stack, group, pub, StateStore(redis, group), metrics, handler)

    async def done() -> bool:
        return len(await totals(stack, prefix)) >= len(msgs) - 2

    await run_until(worker, done)
    out = await totals(stack, prefix)
    expected: dict[tuple[str, int], int] = {}
    for k in keys:
        total = 0
        for i in range(10):
            if values[(k, i)] in (13, -1):
                continue
            total += values[(k, i)]
            expected[(k, i)] = total
    assert {(t.key_id, t.seq): t.total for t in out} == expected
    assert len(out) == len(expected), "an output was published twice"
    assert max(keys_ for keys_, _ in handler.calls) > 1, "the batch handler was never called with several keys"
    dlq = [r for r in await read_topic(stack.kafka_bootstrap, dlq_topic(AddV1.TOPIC))
           if r.key.decode().startswith(prefix)]  # fmt: skip
    reasons = sorted((r.key.decode(), dict(r.headers)["dlq-reason"].decode()) for r in dlq)
    assert reasons == sorted([(keys[1], "unlucky"), (keys[2], "handler_error:RuntimeError"),
                              (keys[3], "validation"), (keys[3], "schema_mismatch")])  # fmt: skip
    for k in keys:
        cp = await StateStore(redis, group).load(k)
        assert cp is not None and IntCodec().loads(cp.state or b"") == max(v for (kk, _), v in expected.items()
                                                                             if kk == k)  # fmt: skip
    await pub.stop()


@pytest.mark.parametrize("after_write", [False, True], ids=["crash-before-checkpoint", "crash-before-commit"])
async def test_batch_mode_replacement_worker_resumes_without_loss_or_double_apply(
    stack: StackInfo, redis: Redis, after_write: bool
) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"bc{uuid.uuid4().hex[:6]}"
    group = f"g-{prefix}"
    keys = [f"{prefix}-{k}" for k in range(4)]
    msgs = [AddV1(key_id=k, seq=i, value=2 * i + 2) for i in range(30) for k in keys]
    await produce(pub, msgs)
    crashing = CrashingStore(redis, group, crash_at=3, after_write=after_write, prefix=prefix)
    dying = make_batch_worker(stack, group, pub, crashing, metrics, BatchAdd(), max_records=7)
    with pytest.raises(Crash):
        await asyncio.wait_for(dying.run(asyncio.Event()), timeout=60)
    assert 0 < len(await totals(stack, prefix)) < len(msgs)
    replacement = make_batch_worker(stack, group, pub, StateStore(redis, group), metrics, BatchAdd(), max_records=7)

    async def complete() -> bool:
        got = await totals(stack, prefix)
        return {(t.key_id, t.seq) for t in got} >= {(m.key_id, m.seq) for m in msgs}

    await run_until(replacement, complete)
    out = await totals(stack, prefix)
    expected = {(k, i): (i + 1) * (i + 2) for k in keys for i in range(30)}
    assert {(t.key_id, t.seq) for t in out} == set(expected)
    assert all(t.total == expected[(t.key_id, t.seq)] for t in out), "a state was applied twice or lost"
    if after_write:  # checkpoint written, commit lost: the redelivered records are skipped by offset
        assert len(out) == len(expected)
    await pub.stop()


@pytest.mark.parametrize("mode", ["per-record", "batch"])
async def test_outputs_carry_the_origin_of_their_input(stack: StackInfo, redis: Redis, mode: str) -> None:
    """The ``origin-ts`` trace header travels from an input to the outputs derived from it; an input
    without one lends its own record timestamp."""
    metrics = WorkerMetrics(CollectorRegistry())
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    prefix = f"o{uuid.uuid4().hex[:6]}"
    keys = [f"{prefix}-{k}" for k in range(3)]
    origins = {(k, i): 1_700_000_000_000 + 1000 * j + i for j, k in enumerate(keys) for i in range(5)}
    for (k, i), o in origins.items():
        await pub.publish_many([AddV1(key_id=k, seq=i, value=1)], origin_ms=o)
    t_plain = int(time.time() * 1000)
    await pub.publish_many([AddV1(key_id=keys[0], seq=5, value=1)])  # no trace header
    group = f"g-{prefix}"
    store = StateStore(redis, group)
    worker = (make_worker(stack, group, pub, store, metrics) if mode == "per-record"
              else make_batch_worker(stack, group, pub, store, metrics, BatchAdd()))

    async def done() -> bool:
        return len(await totals(stack, prefix)) >= 16

    await run_until(worker, done)
    recs = [r for r in await read_topic(stack.kafka_bootstrap, TotalV1.TOPIC) if r.key.decode().startswith(prefix)]
    assert len(recs) == 16
    for r in recs:
        t = TotalV1.model_validate_json(r.value)
        got = int(dict(r.headers)[ORIGIN_HEADER])
        if (t.key_id, t.seq) in origins:
            assert got == origins[(t.key_id, t.seq)]
        else:
            assert t_plain - 5_000 <= got <= int(time.time() * 1000)
    await pub.stop()
