"""until_redis_answers: retries Redis errors with back-off, gives up only when stopping."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streamdx_alerts.redis_retry import until_redis_answers


async def test_retries_until_the_operation_succeeds() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RedisConnectionError("down")
        return "ok"

    assert await until_redis_answers(flaky, what="test", backoff_s=(0.01, 0.02)) == "ok"
    assert len(calls) == 3


async def test_stop_set_reraises_and_other_errors_pass_through() -> None:
    stop = asyncio.Event()
    stop.set()

    async def down() -> None:
        raise RedisConnectionError("down")

    with pytest.raises(RedisConnectionError):
        await until_redis_answers(down, what="test", backoff_s=(0.01, 0.02), stop=stop)

    async def bug() -> None:
        raise KeyError("not a Redis error")

    with pytest.raises(KeyError):
        await until_redis_answers(bug, what="test")


async def test_needs_an_async_function() -> None:
    async def op() -> int:
        return 1

    with pytest.raises(TypeError):
        await until_redis_answers(lambda: op(), what="test")
