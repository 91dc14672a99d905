"""Running stream workers as a service: dependencies, health/metrics endpoint, signals.

``serve_workers`` is what ``streamdx serve dsp|inference|alerts`` call: it opens the Redis
client and the publisher once, lets the service build its workers on them, serves
``/healthz`` (every worker and background task alive), ``/readyz`` (every worker has its
assignment) and ``/metrics`` on ``METRICS_HOST:METRICS_PORT``, and stops gracefully on
SIGTERM/SIGINT: each worker finishes, checkpoints and commits its batch in progress.

A service that needs more than workers returns :class:`ServiceParts` from its factory:
background tasks (``async (stop) -> None``, run beside the workers) and FastAPI routers
served on the same port, with the objects they need set on ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamdx.gc_tuning import GcPauses, tune_gc
from streamdx.logs import configure_logging, log_fields
from streamdx.messaging.publisher import Publisher
from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import WorkerMetrics, render_metrics
from streamdx.settings import WorkerSettings

__all__ = ["ServiceParts", "WorkerRuntime", "health_app", "run_workers", "serve_workers", "start_publisher"]

log = logging.getLogger("streamdx.service")

M = TypeVar("M", bound=WorkerMetrics)


@dataclass
class WorkerRuntime(Generic[M]):
    """Shared dependencies handed to a service's worker factory (``metrics``: the service's own class;
    ``stop``: set when the service stops, e.g. for handlers that wait for Redis to give up then)."""

    settings: WorkerSettings
    metrics: M
    redis: Redis
    publisher: Publisher
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ServiceParts:
    """What a service factory may return instead of a plain list of workers."""

    workers: list[StreamWorker[Any, Any]]
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(default_factory=list)
    routers: list[APIRouter] = field(default_factory=list)
    app_state: dict[str, Any] = field(default_factory=dict)


async def start_publisher(publisher: Publisher, stop: asyncio.Event, max_delay_s: float = 5.0) -> bool:
    """Start ``publisher``, retrying with back-off until it connects or ``stop`` is set."""
    delay = 0.2
    while not stop.is_set():
        try:
            await publisher.start()
            return True
        except Exception as exc:
            log.warning("broker not reachable", extra=log_fields(error_type=type(exc).__name__, retry_in_s=delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, max_delay_s)
    return False


def health_app(workers: Sequence[StreamWorker[Any, Any]], tasks: Sequence[asyncio.Task[None]],
               registry: CollectorRegistry, routers: Sequence[APIRouter] = (),
               app_state: dict[str, Any] | None = None) -> Starlette:
    """``/healthz``, ``/readyz`` and ``/metrics`` of a worker service, plus its routers (a
    FastAPI app then, with ``app_state`` set on ``app.state``)."""

    async def healthz(_: Request) -> JSONResponse:
        alive = bool(tasks) and not any(t.done() for t in tasks)
        return JSONResponse({"alive": alive}, status_code=200 if alive else 503)

    async def readyz(_: Request) -> JSONResponse:
        ready = bool(workers) and all(w.ready for w in workers)
        body = {"ready": ready, "workers": {f"{w.group}:{w.topic}": w.ready for w in workers}}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(render_metrics(registry), media_type="text/plain; version=0.0.4")

    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    if not routers:
        return Starlette(routes=routes)
    app = FastAPI(title="StreamDx", docs_url="/docs", redoc_url=None)
    for route in routes:
        app.router.routes.append(route)
    for router in routers:
        app.include_router(router)
    for name, value in (app_state or {}).items():
        setattr(app.state, name, value)
    return app


async def run_workers(workers: Sequence[StreamWorker[Any, Any]], stop: asyncio.Event) -> None:
    """Run workers until ``stop``; if one crashes, stop the others and re-raise."""
    tasks = [asyncio.create_task(w.run(stop), name=f"{w.group}:{w.topic}") for w in workers]
    try:
        _done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


async def _serve(
    service: str, settings: WorkerSettings, metrics: M,
    build: Callable[[WorkerRuntime[M]], Awaitable[list[StreamWorker[Any, Any]] | ServiceParts]],
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    publisher = Publisher(settings.kafka_bootstrap, metrics, client_id=f"streamdx-{service}",
                          compression=settings.kafka_compression)
    gc_pauses = GcPauses(metrics)
    try:
        if not await start_publisher(publisher, stop):
            return
        built = await build(WorkerRuntime(settings, metrics, redis, publisher, stop))
        parts = built if isinstance(built, ServiceParts) else ServiceParts(list(built))
        tune_gc(settings.gc_threshold0)  # once the models and the workers exist
        workers = parts.workers
        tasks = [asyncio.create_task(w.run(stop), name=f"{w.group}:{w.topic}") for w in workers]
        tasks += [asyncio.create_task(job(stop), name=getattr(job, "__qualname__", "background"))
                  for job in parts.background]
        server = uvicorn.Server(uvicorn.Config(
            health_app(workers, tasks, metrics.registry, parts.routers, parts.app_state),
            host=settings.metrics_host, port=settings.metrics_port, log_config=None, access_log=False,
        ))
        http = asyncio.create_task(server.serve())
        log.info("started", extra=log_fields(service=service, port=settings.metrics_port))
        await asyncio.wait([asyncio.create_task(stop.wait()), *tasks], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                log.error("worker crashed", extra=log_fields(error_type=type(r).__name__))
        server.should_exit = True
        await http
    finally:
        gc_pauses.close()
        await publisher.stop()
        await redis.aclose()
        log.info("stopped", extra=log_fields(service=service))


def serve_workers(
    service: str, settings: WorkerSettings, metrics: M,
    build: Callable[[WorkerRuntime[M]], Awaitable[list[StreamWorker[Any, Any]] | ServiceParts]],
) -> int:
    """Blocking entry point of a worker service; ``metrics`` is the service's own metrics object."""
    configure_logging(service, settings.log_level)
    asyncio.run(_serve(service, settings, metrics, build))
    return 0
