"""Retrying a Redis operation inside a stream handler until Redis answers (or the service stops).

A handler that cannot reach Redis must not raise — the worker would dead-letter a perfectly
good message — so it waits and retries with exponential back-off (tenacity), logging each
wait, and gives up only when the service's stop event is set (the worker then exits without
committing, and the message is redelivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from redis.exceptions import RedisError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from streamdx.logs import log_fields

__all__ = ["until_redis_answers"]

T = TypeVar("T")
log = logging.getLogger("streamdx.alerts")


async def until_redis_answers(
    op: Callable[[], Coroutine[Any, Any, T]], *, what: str, backoff_s: tuple[float, float] = (0.2, 5.0),
    stop: asyncio.Event | None = None,
) -> T:
    """Await ``op()`` until it returns; Redis and socket errors are retried.

    Parameters
    ----------
    op : async function
        The operation (called again for each attempt). It must be an ``async def`` function:
        tenacity awaits coroutine functions only, and would return a lambda's coroutine unawaited.
    what : str
        Name used in the log line (``"<what> unavailable, retrying"``).
    backoff_s : (float, float)
        First and longest wait (s); the wait doubles per attempt.
    stop : asyncio.Event or None
        When set, the next failure is re-raised instead of retried, and a wait ends early.

    Raises
    ------
    RedisError, OSError
        The last error, once ``stop`` is set.
    """

    async def sleep(delay: float) -> None:
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    def before_sleep(rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        delay = rs.next_action.sleep if rs.next_action is not None else 0.0
        log.warning(f"{what} unavailable, retrying",
                    extra=log_fields(error_type=type(exc).__name__, retry_in_s=round(delay, 3)))

    def stopped(_: RetryCallState) -> bool:
        return stop is not None and stop.is_set()

    if not asyncio.iscoroutinefunction(op):
        raise TypeError("until_redis_answers needs an async def function")
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((RedisError, OSError)), stop=stopped,
        wait=wait_exponential(multiplier=backoff_s[0], min=backoff_s[0], max=backoff_s[1]),
        sleep=sleep, before_sleep=before_sleep, reraise=True,
    )
    result: T = await retrying(op)
    return result
