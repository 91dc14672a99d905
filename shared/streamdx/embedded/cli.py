"""``streamdx stack up``: run a local Kafka-compatible broker and Redis until interrupted.

Both listen on free ports of 127.0.0.1 and store their data in a temporary folder that is
deleted on exit. The ``export`` lines printed at start configure the other terminals.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdx stack up",
        description="Run a local Kafka-compatible broker and Redis server (loopback only) until Ctrl-C, "
        "create every topic, and print the KAFKA_BOOTSTRAP and REDIS_URL to export in other terminals.",
    )
    parser.add_argument("--partitions", type=int, default=4, metavar="N",
                        help="partitions of each created topic (default: %(default)s)")
    parser.add_argument("--env-file", type=Path, default=None, metavar="PATH",
                        help="also write the export lines to this file, to 'source' in other terminals")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.partitions < 1:
        build_parser().error("--partitions must be at least 1")
    from streamdx.embedded.stack import EmbeddedStack
    from streamdx.messaging.admin import all_topics, ensure_topics

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with EmbeddedStack() as stack:
        asyncio.run(ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions))
        exports = f"export KAFKA_BOOTSTRAP={stack.kafka_bootstrap}\nexport REDIS_URL={stack.redis_url}\n"
        if args.env_file is not None:
            args.env_file.write_text(exports)
        print(exports, end="", flush=True)
        print("# broker and Redis running; Ctrl-C stops them and deletes their data", flush=True)
        while not done.wait(timeout=1.0):  # a timed wait lets the signal handlers run
            pass
    return 0
