"""Topic creation: every topic of the platform plus its dead-letter topic."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamdx.schemas.topics import DLQ_SUFFIX, Topic, dlq_topic

__all__ = ["all_topics", "ensure_topics"]


def all_topics() -> list[str]:
    """Every platform topic and the ``.dlq`` of each (a topic that is itself a dead-letter
    topic, such as ``alerts.webhooks.dlq``, gets none)."""
    names = [t.value for t in Topic]
    return names + [dlq_topic(t) for t in names if not t.endswith(DLQ_SUFFIX)]


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int, replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamdx-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing]
                )
        return missing
    finally:
        await admin.close()
