"""``streamdx stack up``: run the embedded broker + Redis until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
from collections.abc import Sequence

from streamdx.embedded.stack import EmbeddedStack
from streamdx.messaging.admin import all_topics, ensure_topics

__all__ = ["stack_up"]


def stack_up(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamdx stack up", description=__doc__)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with EmbeddedStack() as stack:
        asyncio.run(ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions))
        print(f"export KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
        print(f"export REDIS_URL={stack.redis_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0
