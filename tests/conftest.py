"""Test fixtures: the real embedded broker + Redis (or KAFKA_BOOTSTRAP / REDIS_URL), started
once per session on free loopback ports and stopped at the end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamdx.embedded import EmbeddedStack
from streamdx.messaging.admin import all_topics, ensure_topics

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class StackInfo:
    def __init__(self, kafka_bootstrap: str, redis_url: str) -> None:
        self.kafka_bootstrap = kafka_bootstrap
        self.redis_url = redis_url


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """The broker and Redis for integration tests."""
    bootstrap, redis_url = os.environ.get("KAFKA_BOOTSTRAP"), os.environ.get("REDIS_URL")
    if bootstrap and redis_url:
        info = StackInfo(bootstrap, redis_url)
        asyncio.run(ensure_topics(info.kafka_bootstrap, all_topics(), 4))
        yield info
        return
    with EmbeddedStack() as s:
        info = StackInfo(s.kafka_bootstrap, s.redis_url)
        asyncio.run(ensure_topics(info.kafka_bootstrap, all_topics(), 4))
        yield info


@pytest.fixture
async def redis(stack: StackInfo) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA
