"""Following a topic read-only (monitors, the demo, ``streamdx tail``): messages as they arrive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from streamdx.messaging.codec import SCHEMA_HEADER, PoisonMessage, decode_message
from streamdx.schemas.base import Message, registry

__all__ = ["tail", "tail_topic", "topic_models"]

M = TypeVar("M", bound=Message)


async def _follow(
    bootstrap: str, topic: str, group: str | None, stop: asyncio.Event, *, from_beginning: bool
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    # followers show data to people: ask the broker to answer a fetch within 50 ms (the default
    # 500 ms batches a live strip into a few jerky updates per second)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                enable_auto_commit=group is not None, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    yield r
    finally:
        await consumer.stop()


async def tail(bootstrap: str, model: type[M], group: str, stop: asyncio.Event) -> AsyncIterator[M]:
    """Yield ``model`` messages of its topic from the group's position until ``stop`` is set.

    Records that do not validate are skipped (the processing workers dead-letter them).
    """
    async for r in _follow(bootstrap, model.TOPIC, group, stop, from_beginning=True):
        try:
            yield decode_message(r.value, r.headers, model)
        except PoisonMessage:
            continue


def topic_models(topic: str) -> dict[str, type[Message]]:
    """Every registered schema of ``topic``: schema id (``"<topic>/v<n>"``) → model."""
    return {sid: model for sid, model in registry.items() if topic == model.TOPIC}


async def tail_topic(
    bootstrap: str, topic: str, stop: asyncio.Event, *, from_beginning: bool = False
) -> AsyncGenerator[Message, None]:
    """Yield the messages of ``topic`` (any registered version, chosen by the ``schema`` header)
    until ``stop`` is set, without joining a consumer group or committing offsets.

    Starts at the end of each partition, or at the beginning with ``from_beginning``. Records
    of an unknown schema or that do not validate are skipped.
    """
    models = topic_models(topic)
    async for r in _follow(bootstrap, topic, None, stop, from_beginning=from_beginning):
        schema = next((v.decode("utf-8", "replace") for k, v in r.headers or () if k == SCHEMA_HEADER), None)
        model = models.get(schema) if schema is not None else None
        if model is None:
            continue
        try:
            yield decode_message(r.value, r.headers, model)
        except PoisonMessage:
            continue
