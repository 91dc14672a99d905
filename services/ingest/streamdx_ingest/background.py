"""Background jobs of ingest (recording replays, slide tiling), keyed by their id."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundJobs"]


class BackgroundJobs:
    """Asyncio tasks by key: start one, wait for one, cancel all on shutdown."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, key: str, job: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``job`` in the background; it leaves the registry when it ends."""
        task = asyncio.create_task(job, name=name)
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    async def wait(self, key: str) -> None:
        """Wait for the job of ``key`` (no-op when none runs); cancelling the waiter spares the job."""
        task = self._tasks.get(key)
        if task is not None:
            await asyncio.shield(task)

    async def shutdown(self) -> None:
        """Cancel every job and wait for each to finish its clean-up."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
