"""``streamdx tail TOPIC``: print the messages of a topic as they arrive, one readable line each.

Any topic with a registered message schema can be followed (``ecg.samples``, ``ecg.beats``,
``esr.*`` …, and whatever later schemas register). Long payloads (base64 samples, beat
waveforms, images) are shown by their size only. Nothing is committed: tailing never moves a
service's consumer group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Sequence
from typing import Any

import streamdx.schemas  # noqa: F401  (registers every message schema)
from streamdx.messaging.tail import tail_topic
from streamdx.schemas.base import Message, registry
from streamdx.settings import ServiceSettings

__all__ = ["build_parser", "format_message", "main", "tailable_topics"]

#: Strings longer than this are payloads: printed as their length.
MAX_SHOWN_CHARS = 48
#: Lists longer than this are printed as their length.
MAX_SHOWN_ITEMS = 8


def tailable_topics() -> list[str]:
    """Every topic that has a registered message schema."""
    return sorted({model.TOPIC for model in registry.values()})


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if len(value) <= MAX_SHOWN_CHARS else f"<{len(value)} chars>"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        if len(value) > MAX_SHOWN_ITEMS:
            return f"<{len(value)} items>"
        return "[" + ",".join(_short(v) for v in value) + "]"
    return json.dumps(value)


def format_message(msg: Message) -> str:
    """One line: ``name=value`` for every field set, payloads shortened to their size."""
    fields = msg.model_dump(mode="json", exclude_none=True)
    return " ".join(f"{name}={_short(value)}" for name, value in fields.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdx tail",
        description="Print the messages of a topic as they arrive, one line each, from the broker named by "
        "KAFKA_BOOTSTRAP. Runs until Ctrl-C (or --limit messages). Does not disturb the services: no "
        "consumer group, nothing committed.",
    )
    parser.add_argument("topic", choices=tailable_topics(), metavar="TOPIC",
                        help="topic to follow: " + ", ".join(tailable_topics()))
    parser.add_argument("--stream", metavar="ID",
                        help="only messages of this stream (its key: ECG stream id, ESR tube id or slide id)")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start with the oldest message kept by the broker instead of new messages only")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="stop after printing N messages (default: run until Ctrl-C)")
    return parser


async def _run(bootstrap: str, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    printed = 0
    async with contextlib.aclosing(
        tail_topic(bootstrap, args.topic, stop, from_beginning=args.from_beginning)
    ) as messages:
        async for msg in messages:
            if args.stream is not None and msg.key() != args.stream:
                continue
            print(format_message(msg), flush=True)
            printed += 1
            if args.limit is not None and printed >= args.limit:
                break
    return 0


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return asyncio.run(_run(ServiceSettings().kafka_bootstrap, args))
