"""``streamdx topics create``: create every platform topic and its dead-letter topic."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from streamdx.messaging.admin import all_topics, ensure_topics
from streamdx.settings import ServiceSettings

__all__ = ["build_parser", "main", "topics_report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdx topics create",
        description="Create every StreamDx topic and its '.dlq' dead-letter topic on the broker named by "
        "KAFKA_BOOTSTRAP. Topics that already exist are left as they are.",
    )
    parser.add_argument("--partitions", type=int, default=None, metavar="N",
                        help="partitions of each new topic (default: TOPIC_PARTITIONS, 4 unless set)")
    return parser


def topics_report(wanted: Sequence[str], created: Sequence[str]) -> str:
    """What ``topics create`` prints: the topics created and the ones that already existed."""
    existing = [t for t in wanted if t not in set(created)]
    if not created:
        return f"all {len(wanted)} topics already exist: {', '.join(wanted)}"
    lines = [f"created {len(created)} topics: {', '.join(created)}"]
    if existing:
        lines.append(f"{len(existing)} already existed: {', '.join(existing)}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = ServiceSettings()
    partitions = settings.topic_partitions if args.partitions is None else args.partitions
    if partitions < 1:
        build_parser().error("--partitions must be at least 1")
    wanted = all_topics()
    created = asyncio.run(ensure_topics(settings.kafka_bootstrap, wanted, partitions, settings.topic_replication))
    print(topics_report(wanted, created))
    return 0
