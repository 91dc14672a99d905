"""Test harness of webhook delivery: a real HTTP receiver that verifies every request with
the off-the-shelf svix verifier and can be told to fail, and the delivery service (worker +
dispatcher) running in the test loop on the real broker and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from svix.webhooks import Webhook, WebhookVerificationError

from streamdx.embedded import free_port
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import AlertsMetrics
from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.settings import AlertsSettings
from streamdx_alerts.webhooks.service import WebhookDelivery, build_webhook_delivery
from streamdx_alerts.webhooks.subscriptions import Subscription, SubscriptionCreate
from tests.conftest import StackInfo


@dataclass
class Hit:
    """One request the receiver got."""

    at: float  # wall time (epoch s)
    webhook_id: str
    status: int
    verified: bool
    body: dict[str, Any] | None
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook endpoint on a fixed loopback port that can be stopped (nothing listening) and restarted.

    ``fail_next`` requests answer ``fail_status`` (with ``retry_after`` if set); a request whose
    signature does not verify with ``secret`` answers 401.
    """

    secret: str
    port: int = field(default_factory=free_port)
    fail_next: int = 0
    fail_status: int = 500
    always_status: int | None = None
    retry_after: str | None = None
    hits: list[Hit] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Hit]:
        """Requests answered 2xx."""
        return [h for h in self.hits if 200 <= h.status < 300]

    def delivered_ids(self) -> list[str]:
        return [h.webhook_id for h in self.delivered()]

    def attempts_of(self, webhook_id: str) -> list[Hit]:
        return [h for h in self.hits if h.webhook_id == webhook_id]

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        wid = headers.get("webhook-id", "")
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        status = 200
        extra: dict[str, str] = {}
        if not verified:
            status = 401
        elif self.always_status is not None:
            status = self.always_status
        elif self.fail_next > 0:
            self.fail_next -= 1
            status = self.fail_status
            if self.retry_after is not None:
                extra["retry-after"] = self.retry_after
        self.hits.append(Hit(time.time(), wid, status, verified, json.loads(body) if verified else None, headers))
        return JSONResponse({"ok": status < 300}, status_code=status, headers=extra)

    async def _healthz(self, _: Request) -> Response:
        return JSONResponse({"ok": True})

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"]), Route("/healthz", self._healthz)])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                     access_log=False, lifespan="off"))
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):
            if self._server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)
        raise TimeoutError("receiver did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=15)
        self._server = None
        self._task = None


def alert_event(stream_id: str, n: int, *, state: str = "raised", seq: int = 0) -> AlertEventV1:
    """A valid alert event (emitted now) of ``stream_id``, alert number ``n``."""
    now = datetime.now(UTC)
    return AlertEventV1(
        alert_id=f"{stream_id}:af_episode:{n}", seq=seq, stream_id=stream_id, kind="af_episode",
        state=state, severity="warning", technical=False, started_at=now, criterion_at=now,  # type: ignore[arg-type]
        emitted_at=now, rule="default/af_episode", message=f"AF episode {n}", details={"hr_bpm": 120},
    )


def webhook_settings(stack: StackInfo, **overrides: Any) -> AlertsSettings:
    """Settings for a test: loopback allowed, a fresh consumer group, small back-off."""
    base: dict[str, Any] = {
        "kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url, "webhook_allow_private": True,
        "alerts_delivery_group": f"webhooks-{uuid.uuid4().hex[:8]}", "alerts_admin_token": "admin-token-1",
        "webhook_timeout_s": 2.0, "webhook_backoff_initial_s": 0.2, "webhook_backoff_max_s": 2.0,
        "webhook_max_attempts": 5, "webhook_breaker_failures": 50, "webhook_breaker_reset_s": 1.0,
        "webhook_poll_s": 0.1, "batch_timeout_ms": 50,
    }
    return AlertsSettings(**{**base, **overrides})


def unique_stream() -> str:
    return f"wh-{uuid.uuid4().hex[:10]}"


@dataclass
class DeliveryRig:
    """The delivery service under test and its dependencies."""

    settings: AlertsSettings
    redis: Redis
    publisher: Publisher
    metrics: AlertsMetrics
    delivery: WebhookDelivery
    stop: asyncio.Event
    created: list[str] = field(default_factory=list)

    async def subscribe(self, url: str, stream_id: str, secret: str | None = None, **kw: Any) -> Subscription:
        from streamdx_alerts.webhooks.signing import new_secret

        spec = SubscriptionCreate(url=url, stream_ids=[stream_id], **kw)
        sub = await self.delivery.subscriptions.create(spec, secret or new_secret())
        self.created.append(sub.id)
        return sub

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value("streamdx_webhook_deliveries_total", {"outcome": outcome})
        return value or 0.0


async def wait_until(predicate: Any, timeout_s: float, step_s: float = 0.05) -> bool:
    """Poll ``predicate()`` (sync or async) until true or the timeout; returns the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() >= deadline:
            return bool(value)
        await asyncio.sleep(step_s)


@contextlib.asynccontextmanager
async def delivery_rig(stack: StackInfo, settings: AlertsSettings, *, run_worker: bool = True,
                       publisher: Publisher | None = None) -> AsyncIterator[DeliveryRig]:
    """The worker (``alerts.events`` → queue) and the dispatcher running in the test loop."""
    metrics = AlertsMetrics(CollectorRegistry())
    redis = Redis.from_url(stack.redis_url)
    own_pub = publisher is None
    pub = publisher or Publisher(stack.kafka_bootstrap, metrics)
    if own_pub:
        await pub.start()
    stop = asyncio.Event()
    delivery = build_webhook_delivery(settings, redis, pub, metrics, stop=stop)
    tasks = [asyncio.create_task(delivery.run_dispatcher(stop))]
    if run_worker:
        tasks.append(asyncio.create_task(delivery.worker.run(stop)))
    rig = DeliveryRig(settings, redis, pub, metrics, delivery, stop)
    try:
        yield rig
    finally:
        for sub_id in rig.created:  # their leftover deliveries are dropped, never sent
            await delivery.subscriptions.delete(sub_id)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
        if own_pub:
            await pub.stop()
        await redis.aclose()
