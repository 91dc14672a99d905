"""Test harness: ASGI apps under a real uvicorn server on a free loopback port, and workers,
both running inside the test loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from streamdx.embedded import free_port
from streamdx.messaging.publisher import Publisher
from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import WorkerMetrics
from streamdx.settings import WorkerSettings
from streamdx.worker_service import WorkerRuntime
from streamdx_ingest.app import create_app
from streamdx_ingest.settings import IngestSettings
from tests.conftest import StackInfo

M = TypeVar("M", bound=WorkerMetrics)


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(200):
            if server.started:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
            await asyncio.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@contextlib.asynccontextmanager
async def serve_ingest(settings: IngestSettings) -> AsyncIterator[str]:
    """The ingest app on a real port, yielded once ``/readyz`` says the broker is connected."""
    async with serve(create_app(settings)) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            for _ in range(100):
                if (await c.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
        yield base


@contextlib.asynccontextmanager
async def running_workers(
    stack: StackInfo, metrics: M, build: Callable[[WorkerRuntime[M]], list[StreamWorker[Any, Any]]]
) -> AsyncIterator[list[StreamWorker[Any, Any]]]:
    """Workers built on a fresh runtime (metrics, Redis, publisher), running in the test loop."""
    redis = Redis.from_url(stack.redis_url)
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    runtime = WorkerRuntime(WorkerSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url),
                            metrics, redis, pub)
    workers = build(runtime)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield workers
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await pub.stop()
        await redis.aclose()
