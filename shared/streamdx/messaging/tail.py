"""Following a topic read-only (monitors, the demo): typed messages as they arrive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from aiokafka import AIOKafkaConsumer

from streamdx.messaging.codec import PoisonMessage, decode_message
from streamdx.schemas.base import Message

__all__ = ["tail"]

M = TypeVar("M", bound=Message)


async def tail(bootstrap: str, model: type[M], group: str, stop: asyncio.Event) -> AsyncIterator[M]:
    """Yield ``model`` messages of its topic from the group's position until ``stop`` is set.

    Records that do not validate are skipped (the processing workers dead-letter them).
    """
    consumer = AIOKafkaConsumer(model.TOPIC, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=True)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        yield decode_message(r.value, r.headers, model)
                    except PoisonMessage:
                        continue
    finally:
        await consumer.stop()
