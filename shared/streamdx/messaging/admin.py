"""Topic creation: every topic of the platform plus its dead-letter topic."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterable, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamdx.schemas.topics import Topic, dlq_topic
from streamdx.settings import ServiceSettings

__all__ = ["all_topics", "create_topics_main", "ensure_topics"]


def all_topics() -> list[str]:
    """Every platform topic and its ``.dlq``."""
    names = [t.value for t in Topic]
    return names + [dlq_topic(t) for t in names]


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


def create_topics_main(argv: Sequence[str]) -> int:
    """``streamdx topics create [--partitions N]`` against ``KAFKA_BOOTSTRAP``."""
    settings = ServiceSettings()
    parser = argparse.ArgumentParser(prog="streamdx topics create")
    parser.add_argument("--partitions", type=int, default=settings.topic_partitions)
    args = parser.parse_args(argv)
    created = asyncio.run(
        ensure_topics(settings.kafka_bootstrap, all_topics(), args.partitions, settings.topic_replication)
    )
    print(f"created {len(created)} topics: {', '.join(created) or '-'}")
    return 0
