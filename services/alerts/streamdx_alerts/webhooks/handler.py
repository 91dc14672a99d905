"""The :class:`~streamdx.messaging.worker.StreamWorker` handler that queues webhook deliveries.

For each alert event of ``alerts.events`` it finds the enabled subscriptions whose filters
take it and queues one delivery per subscription in Redis (idempotent on (subscription,
``event_id``)), then returns. The worker commits the Kafka offset only after the handler
returned, so an event is committed only once its deliveries are persisted; the POSTs are the
dispatcher's job. The handler is stateless (no per-key state, offsets still checkpointed).

Redis unavailable: the handler retries with back-off (the batch waits) rather than raising,
because a raising handler sends the record to ``alerts.events.dlq``. Only when the service is
stopping does it give up, raising; the batch is then not committed and the next owner of the
partition queues the event again (idempotently).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from streamdx.messaging.worker import Handled
from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.redis_retry import until_redis_answers
from streamdx_alerts.webhooks.queue import DeliveryQueue
from streamdx_alerts.webhooks.subscriptions import SubscriptionStore

__all__ = ["QueueDeliveries"]

log = logging.getLogger("streamdx.alerts.webhooks")


class QueueDeliveries:
    """``async (event, None) -> Handled(None, ())``: queue the event for its subscriptions.

    Parameters
    ----------
    subscriptions : SubscriptionStore
        Subscriptions (cached by version: one Redis GET per event when nothing changed).
    queue : DeliveryQueue
        The delivery queue.
    wake : callable
        Called after new deliveries were queued (the dispatcher of this process).
    stop : asyncio.Event or None
        Set when the service stops: ends the Redis retry loop.
    retry_backoff_s : tuple of float
        First and longest wait between tries while Redis is unavailable.
    """

    def __init__(self, subscriptions: SubscriptionStore, queue: DeliveryQueue, wake: Callable[[], None], *,
                 stop: asyncio.Event | None = None, retry_backoff_s: tuple[float, float] = (0.2, 5.0)) -> None:
        self._subs = subscriptions
        self._queue = queue
        self._wake = wake
        self._stop = stop
        self._backoff = retry_backoff_s
        self.queued = 0

    async def __call__(self, event: AlertEventV1, state: None) -> Handled[None]:
        async def enqueue() -> int:
            subs = await self._subs.matching(event)
            return await self._queue.enqueue(event, [s.id for s in subs])

        new = await until_redis_answers(enqueue, what="delivery queue", backoff_s=self._backoff, stop=self._stop)
        if new:
            self.queued += new
            self._wake()
        return Handled(None, ())
