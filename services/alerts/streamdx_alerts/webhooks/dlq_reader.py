"""Reading ``alerts.webhooks.dlq`` from the beginning (or a time) to its current end."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamdx.logs import log_fields
from streamdx.messaging.codec import PoisonMessage, decode_message
from streamdx.schemas.alerts import WebhookDeadLetterV1
from streamdx.schemas.topics import Topic

__all__ = ["read_dead_letters"]

log = logging.getLogger("streamdx.alerts.webhooks")


async def read_dead_letters(bootstrap: str, *, since: datetime | None = None,
                            timeout_s: float = 30.0) -> list[WebhookDeadLetterV1]:
    """Every dead letter on the topic (written at or after ``since``), up to the end offsets at call time.

    Parameters
    ----------
    bootstrap : str
        Kafka bootstrap servers.
    since : datetime or None
        Start at the first record with a timestamp at or after this time (default: the beginning).
    timeout_s : float
        Time allowed for the whole read; what was read by then is returned.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="streamdx-alerts-replay")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        parts = consumer.partitions_for_topic(Topic.ALERTS_WEBHOOKS_DLQ)
        while not parts and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await consumer.topics()  # refreshes the metadata
            parts = consumer.partitions_for_topic(Topic.ALERTS_WEBHOOKS_DLQ)
        tps = [TopicPartition(Topic.ALERTS_WEBHOOKS_DLQ, p) for p in sorted(parts or ())]
        if not tps:
            return []
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if since is None:
            await consumer.seek_to_beginning(*tps)
        else:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else end[tp])
        out: list[WebhookDeadLetterV1] = []
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= end[tp] for tp in tps):
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    if rec.offset >= end[TopicPartition(rec.topic, rec.partition)]:
                        continue
                    try:
                        out.append(decode_message(rec.value, rec.headers, WebhookDeadLetterV1))
                    except PoisonMessage as exc:
                        log.warning("unreadable dead letter skipped", extra=log_fields(
                            partition=rec.partition, offset=rec.offset, reason=exc.reason))
        return out
    finally:
        await consumer.stop()
