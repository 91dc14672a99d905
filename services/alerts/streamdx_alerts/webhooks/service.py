"""Composition of webhook delivery: the ``alerts.events`` worker and the dispatcher.

``main.py`` of the alerts service calls :func:`build_webhook_delivery` once with the shared
Redis client, publisher and metrics, adds ``delivery.worker`` to its stream workers and runs
``delivery.run_dispatcher(stop)`` as a task next to them (the dispatcher owns its HTTP client
and closes it when ``stop`` is set)::

    delivery = build_webhook_delivery(settings, redis, publisher, metrics, stop=stop)
    workers.append(delivery.worker)
    dispatcher_task = asyncio.create_task(delivery.run_dispatcher(stop))
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from streamdx.messaging.publisher import Publisher
from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import AlertsMetrics
from streamdx.schemas.alerts import AlertEventV1
from streamdx.schemas.topics import Topic
from streamdx.state_store import StateStore
from streamdx_alerts.settings import AlertsSettings
from streamdx_alerts.webhooks.backoff import Backoff
from streamdx_alerts.webhooks.dispatcher import Dispatcher
from streamdx_alerts.webhooks.handler import QueueDeliveries
from streamdx_alerts.webhooks.queue import DeliveryQueue
from streamdx_alerts.webhooks.sender import Sender
from streamdx_alerts.webhooks.signing import USER_AGENT
from streamdx_alerts.webhooks.subscriptions import SubscriptionStore

__all__ = ["WebhookDelivery", "build_webhook_delivery", "http_client"]

log = logging.getLogger("streamdx.alerts.webhooks")


def http_client(settings: AlertsSettings) -> httpx.AsyncClient:
    """The client of webhook POSTs: per-POST timeout, no redirects, pool sized to the concurrency."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_timeout_s),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=settings.webhook_concurrency,
                            max_keepalive_connections=settings.webhook_concurrency),
        headers={"user-agent": USER_AGENT},
        trust_env=False,
    )


@dataclass
class WebhookDelivery:
    """The parts of webhook delivery, built by :func:`build_webhook_delivery`.

    Attributes
    ----------
    worker : StreamWorker
        Consumes ``alerts.events`` in ``ALERTS_DELIVERY_GROUP`` and queues deliveries.
    dispatcher : Dispatcher
        POSTs the queued deliveries (run it with :meth:`run_dispatcher`).
    handler : QueueDeliveries
        The worker's handler.
    queue : DeliveryQueue
        The Redis delivery queue.
    subscriptions : SubscriptionStore
        The subscription store.
    """

    worker: StreamWorker[AlertEventV1, None]
    dispatcher: Dispatcher
    handler: QueueDeliveries
    queue: DeliveryQueue
    subscriptions: SubscriptionStore
    _settings: AlertsSettings
    _client: httpx.AsyncClient

    async def run_dispatcher(self, stop: asyncio.Event) -> None:
        """Run the dispatcher until ``stop``; closes the HTTP client at the end."""
        try:
            await self.dispatcher.run(stop)
        finally:
            await self._client.aclose()


def build_webhook_delivery(
    settings: AlertsSettings, redis: Redis, publisher: Publisher, metrics: AlertsMetrics, *,
    stop: asyncio.Event | None = None, client: httpx.AsyncClient | None = None,
) -> WebhookDelivery:
    """Build the delivery worker and the dispatcher on shared dependencies.

    Parameters
    ----------
    settings : AlertsSettings
        ``WEBHOOK_*`` settings, ``ALERTS_DELIVERY_GROUP``, ``KAFKA_BOOTSTRAP``, batch sizes.
    redis : Redis
        Shared Redis client (queue, subscriptions, worker checkpoints).
    publisher : Publisher
        Started publisher (dead letters; the worker's outputs — none).
    metrics : AlertsMetrics
        The service's metrics.
    stop : asyncio.Event or None
        The service's stop event (ends the handler's Redis retry loop when stopping).
    client : httpx.AsyncClient or None
        HTTP client for the POSTs (default: :func:`http_client`); closed by ``run_dispatcher``.
    """
    if settings.webhook_lease_s <= settings.webhook_timeout_s:
        log.warning("WEBHOOK_LEASE_S is not longer than WEBHOOK_TIMEOUT_S: slow POSTs will be sent twice")
    subscriptions = SubscriptionStore(redis)
    queue = DeliveryQueue(redis, settings.webhook_record_ttl_s)
    http = client or http_client(settings)
    dispatcher = Dispatcher(
        queue=queue, subscriptions=subscriptions, sender=Sender(http, allow_private=settings.webhook_allow_private),
        publisher=publisher, metrics=metrics,
        backoff=Backoff(settings.webhook_backoff_initial_s, settings.webhook_backoff_max_s,
                        jitter=settings.webhook_backoff_jitter),
        max_attempts=settings.webhook_max_attempts, concurrency=settings.webhook_concurrency,
        breaker_failures=settings.webhook_breaker_failures, breaker_reset_s=settings.webhook_breaker_reset_s,
        lease_s=settings.webhook_lease_s, poll_s=settings.webhook_poll_s,
    )
    handler = QueueDeliveries(subscriptions, queue, dispatcher.wake, stop=stop)
    worker: StreamWorker[AlertEventV1, None] = StreamWorker(
        topic=Topic.ALERTS_EVENTS, group=settings.alerts_delivery_group, model=AlertEventV1, handler=handler,
        codec=None, publisher=publisher, store=StateStore(redis, settings.alerts_delivery_group), metrics=metrics,
        batch_max_records=settings.batch_max_records, **settings.consumer_options(),
    )
    return WebhookDelivery(worker, dispatcher, handler, queue, subscriptions, settings, http)
