"""Reading what is on a topic, for assertions (a fresh consumer without a group)."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streamdx.messaging.codec import decode_message
from streamdx.schemas.base import Message

M = TypeVar("M", bound=Message)


async def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 10.0) -> list[ConsumerRecord]:
    """Every record currently on ``topic`` (up to its end offsets at call time)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[ConsumerRecord] = []
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                out.extend(recs)
        return out
    finally:
        await consumer.stop()


async def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Whether consumer group ``group`` has committed, on every partition of ``topic``, the
    partition's current end offset (it consumed everything there is)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return False
        end = await consumer.end_offsets(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if (committed or 0) < end[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def read_messages(bootstrap: str, model: type[M], key: str, *, timeout_s: float = 10.0) -> list[M]:
    """Messages of ``model``'s topic with partition key ``key``, in offset order."""
    records = [r for r in await read_topic(bootstrap, model.TOPIC, timeout_s=timeout_s) if r.key == key.encode()]
    records.sort(key=lambda r: r.offset)
    return [decode_message(r.value, r.headers, model) for r in records]


async def wait_for_messages(
    bootstrap: str, model: type[M], key: str, count: int, *, timeout_s: float = 30.0
) -> list[M]:
    """Poll until at least ``count`` messages for ``key`` exist (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    msgs: list[M] = []
    while time.monotonic() < deadline:
        msgs = await read_messages(bootstrap, model, key)
        if len(msgs) >= count:
            return msgs
        await asyncio.sleep(0.3)
    return msgs
