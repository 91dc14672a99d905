"""``streamdx alerts replay``: queue dead-lettered webhook deliveries again.

Reads ``alerts.webhooks.dlq`` from the beginning (or from ``--since``), keeps the dead
letters that match the filters (the latest one per subscription and event), and queues each
again in the Redis delivery queue with a fresh attempt count; the running alerts service
delivers them (its dispatcher looks at the queue at least every ``WEBHOOK_POLL_S``).
A delivery that is already queued or was delivered since is left alone. Prints a table of
what it did (``--dry-run``: of what it would do).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

__all__ = ["ReplayRow", "build_parser", "main", "parse_since", "replay_dead_letters"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 time (UTC without a zone) or a duration back from now (``90m``, ``2h``, ``7d``)."""
    now = now or datetime.now(UTC)
    m = _DURATION.match(value.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or a duration like 2h: {value!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    """Options of ``streamdx alerts replay``."""
    p = argparse.ArgumentParser(
        prog="streamdx alerts replay",
        description="Queue dead-lettered webhook deliveries (alerts.webhooks.dlq) again with a fresh attempt "
        "count; the running alerts service delivers them. Reads KAFKA_BOOTSTRAP and REDIS_URL.",
        epilog="environment variables:\n  KAFKA_BOOTSTRAP  Kafka bootstrap servers (default: 127.0.0.1:9092)\n"
        "  REDIS_URL        Redis URL of the alerts service (default: redis://127.0.0.1:6379/0)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--since", type=parse_since, default=None,
                   help="only dead letters written after this time: ISO 8601 or a duration back from now "
                   "(30m, 2h, 7d); default: the beginning of the topic")
    p.add_argument("--subscription", metavar="ID", default=None, help="only this subscription id")
    p.add_argument("--event-id", default=None, help="only this event id (alert_id:seq)")
    p.add_argument("--limit", type=int, default=None, help="replay at most this many deliveries")
    p.add_argument("--dry-run", action="store_true", help="print what would be replayed, change nothing")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds allowed to read the topic (default 30)")
    return p


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One line of the replay table."""

    subscription_id: str
    event_id: str
    attempts: int
    last_error: str
    failed_at: datetime
    result: str


async def replay_dead_letters(
    bootstrap: str, redis_url: str, *, since: datetime | None = None, subscription: str | None = None,
    event_id: str | None = None, limit: int | None = None, dry_run: bool = False, timeout_s: float = 30.0,
) -> list[ReplayRow]:
    """Read the dead letters, filter them and queue them again (see the module doc).

    Results per row: ``queued``, ``already_queued``, ``already_delivered``,
    ``unknown_subscription`` (deleted since), or ``would_queue`` with ``dry_run``.
    """
    from redis.asyncio import Redis

    from streamdx.schemas.alerts import WebhookDeadLetterV1
    from streamdx_alerts.webhooks.dlq_reader import read_dead_letters
    from streamdx_alerts.webhooks.queue import DeliveryQueue
    from streamdx_alerts.webhooks.subscriptions import SubscriptionStore

    letters = await read_dead_letters(bootstrap, since=since, timeout_s=timeout_s)
    latest: dict[tuple[str, str], WebhookDeadLetterV1] = {}
    for letter in letters:
        if subscription is not None and letter.subscription_id != subscription:
            continue
        if event_id is not None and letter.event.event_id != event_id:
            continue
        latest[(letter.subscription_id, letter.event.event_id)] = letter
    chosen = sorted(latest.values(), key=lambda x: x.failed_at)
    if limit is not None:
        chosen = chosen[:limit]
    rows: list[ReplayRow] = []
    redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        store = SubscriptionStore(redis)
        queue = DeliveryQueue(redis)
        for letter in chosen:
            if await store.get(letter.subscription_id) is None:
                result = "unknown_subscription"
            elif dry_run:
                result = "would_queue"
            else:
                result = await queue.replay(letter.subscription_id, letter.event)
            rows.append(ReplayRow(letter.subscription_id, letter.event.event_id, letter.attempts,
                                  letter.last_error, letter.failed_at, result))
    finally:
        await redis.aclose()
    return rows


def print_table(rows: Sequence[ReplayRow], out: TextIO) -> None:
    """The rows as an aligned text table."""
    header = ("SUBSCRIPTION", "EVENT_ID", "ATTEMPTS", "LAST_ERROR", "FAILED_AT", "RESULT")
    lines = [header] + [
        (r.subscription_id, r.event_id, str(r.attempts), r.last_error[:40],
         r.failed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), r.result)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n")


def main(argv: Sequence[str]) -> int:
    """Entry point of ``streamdx alerts replay``."""
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("streamdx alerts replay: --limit must be at least 1", file=sys.stderr)
        return 2
    from streamdx_alerts.settings import AlertsSettings

    settings = AlertsSettings()
    rows = asyncio.run(replay_dead_letters(
        settings.kafka_bootstrap, settings.redis_url, since=args.since, subscription=args.subscription,
        event_id=args.event_id, limit=args.limit, dry_run=args.dry_run, timeout_s=args.timeout,
    ))
    print_table(rows, sys.stdout)
    done = sum(r.result in ("queued", "would_queue") for r in rows)
    verb = "would queue" if args.dry_run else "queued"
    print(f"{verb} {done} of {len(rows)} dead-lettered deliveries")
    return 0
