"""The dispatcher: POSTs due deliveries with bounded concurrency and per-endpoint breakers.

It loops: claim up to ``concurrency - in_flight`` due deliveries from the Redis queue
(:class:`~streamdx_alerts.webhooks.queue.DeliveryQueue`), start one task per delivery, then
sleep until the next delivery is due, a task finishes, :meth:`Dispatcher.wake` is called (the
handler of the same process just queued something) or ``poll_s`` passes (deliveries queued by
another process, e.g. ``streamdx alerts replay``). With the receiver up, an event is POSTed
within milliseconds of being queued.

Per delivery:

* subscription deleted or disabled → dropped (not sent);
* the endpoint's circuit breaker (`purgatory`_, one circuit per subscription) is open →
  **postponed** until its reset time: no attempt is counted and nothing is lost; after
  ``breaker_reset_s`` a trial request goes through (half-open) and closes the circuit if it
  succeeds. Retryable failures (5xx, 408/409/425/429, timeouts, connection errors) count
  towards opening it; a 2xx or a permanent 4xx is a healthy endpoint;
* 2xx → delivered; permanent 4xx → rejected and dead-lettered at once; retryable → due again
  after the back-off (full jitter, ``Retry-After`` honoured, capped), until ``max_attempts``
  POSTs failed → a :class:`~streamdx.schemas.alerts.WebhookDeadLetterV1` on
  ``alerts.webhooks.dlq`` (published and acknowledged before the delivery leaves the queue;
  if the broker is down it stays queued and is dead-lettered on a later turn).

Order between the events of one endpoint is not guaranteed (deliveries run concurrently
and retries overtake): receivers order by ``data.seq`` of an ``alert_id``.

Metrics: ``webhook_deliveries{outcome}`` per attempt (``delivered``, ``retry``,
``rejected``, ``circuit_open``) and per dead letter (``dead_letter``: attempts exhausted or
rejected), ``webhook_seconds`` per POST, ``webhook_pending`` (queue length),
``webhook_event_to_post_seconds`` (event emission → the POST that delivered it).

.. _purgatory: https://pypi.org/project/purgatory/
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from datetime import UTC, datetime

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from redis.exceptions import RedisError

from streamdx.logs import log_fields
from streamdx.messaging.errors import Backpressure, BrokerUnavailable
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import AlertsMetrics
from streamdx.schemas.alerts import WebhookDeadLetterV1
from streamdx_alerts.webhooks.backoff import Backoff
from streamdx_alerts.webhooks.queue import Delivery, DeliveryQueue
from streamdx_alerts.webhooks.sender import Attempt, Sender
from streamdx_alerts.webhooks.subscriptions import SubscriptionStore

__all__ = ["Dispatcher", "EndpointFailure"]

log = logging.getLogger("streamdx.alerts.webhooks")
#: Wait before publishing a dead letter again when the broker did not acknowledge it.
DLQ_RETRY_S = 5.0


class EndpointFailure(Exception):
    """A retryable failure of an endpoint (what the circuit breaker counts)."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.error)
        self.attempt = attempt


class Dispatcher:
    """Sends due webhook deliveries (see the module doc).

    Parameters
    ----------
    queue : DeliveryQueue
        The Redis delivery queue.
    subscriptions : SubscriptionStore
        Where endpoint URLs and secrets are read (cached by version).
    sender : Sender
        Makes the signed POSTs.
    publisher : Publisher
        Publishes dead letters.
    metrics : AlertsMetrics
        The service's metrics.
    backoff : Backoff
        Retry delays.
    max_attempts : int
        POSTs per delivery before the dead letter.
    concurrency : int
        POSTs in flight at most.
    breaker_failures, breaker_reset_s : int, float
        Consecutive retryable failures that open an endpoint's circuit, and how long it stays open.
    lease_s : float
        How long a claimed delivery is reserved (a process that dies releases it after this).
    poll_s : float
        Longest sleep between looks at the queue.
    """

    def __init__(
        self, *, queue: DeliveryQueue, subscriptions: SubscriptionStore, sender: Sender, publisher: Publisher,
        metrics: AlertsMetrics, backoff: Backoff, max_attempts: int, concurrency: int, breaker_failures: int,
        breaker_reset_s: float, lease_s: float, poll_s: float,
    ) -> None:
        self._queue = queue
        self._subs = subscriptions
        self._sender = sender
        self._publisher = publisher
        self._metrics = metrics
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._concurrency = concurrency
        self._breaker_reset_s = breaker_reset_s
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_failures, default_ttl=breaker_reset_s, exclude=[asyncio.CancelledError])
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self.attempts = 0

    def wake(self) -> None:
        """Look at the queue now (called after an enqueue in the same process)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """POSTs running now."""
        return len(self._in_flight)

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set; then wait for the POSTs in flight (bounded) and release the rest."""
        stopper = asyncio.create_task(self._on_stop(stop))
        errors = 0
        last_gauge = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self._concurrency - len(self._in_flight)
                next_due: float | None = None
                if free > 0:
                    try:
                        ids, next_due = await self._queue.claim(free, self._lease_s)
                        now = time.monotonic()
                        if now - last_gauge >= 1.0:
                            self._metrics.webhook_pending.set(await self._queue.pending())
                            last_gauge = now
                        errors = 0
                    except (RedisError, OSError) as exc:
                        errors += 1
                        delay = min(5.0, 0.2 * 2 ** min(errors, 5))
                        log.warning("delivery queue unavailable", extra=log_fields(
                            error_type=type(exc).__name__, retry_in_s=delay))
                        await self._sleep(stop, delay)
                        continue
                    for did in ids:
                        if did not in self._in_flight:
                            task = asyncio.create_task(self._deliver(did), name=f"webhook:{did}")
                            self._in_flight[did] = task
                            task.add_done_callback(functools.partial(self._done, did))
                    if len(ids) >= free:
                        continue  # there may be more due: claim again once a slot frees up
                timeout = self._poll_s
                if next_due is not None and free > 0:
                    timeout = min(timeout, max(0.0, next_due - time.time()))
                if timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        finally:
            stopper.cancel()
            await self._drain()

    async def _on_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _sleep(self, stop: asyncio.Event, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)

    def _done(self, did: str, _task: asyncio.Task[None]) -> None:
        task = self._in_flight.pop(did, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("delivery task failed", extra=log_fields(error_type=type(exc).__name__))
        self._wake.set()

    async def _drain(self) -> None:
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        unfinished = [d for d, t in self._in_flight.items() if not t.done()]
        for d in unfinished:
            self._in_flight[d].cancel()
        if unfinished:
            with contextlib.suppress(RedisError, OSError):
                await self._queue.release(unfinished)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one delivery -----------------------------------------------------------------
    async def _deliver(self, did: str) -> None:
        try:
            delivery = await self._queue.load(did)
            if delivery is None:
                return
            if delivery.final:
                await self._dead_letter(delivery, delivery.attempts, delivery.final)
                return
            sub = (await self._subs.all_cached()).get(delivery.subscription_id)
            if sub is None or not sub.enabled:
                await self._queue.dropped(did, "subscription_deleted" if sub is None else "subscription_disabled")
                return
            await self._attempt(delivery, sub.url, sub.signing_secrets())
        except (RedisError, OSError) as exc:  # the lease brings the delivery back
            log.warning("delivery bookkeeping failed", extra=log_fields(error_type=type(exc).__name__))

    async def _attempt(self, delivery: Delivery, url: str, secrets: list[str]) -> None:
        breaker = await self._breakers.get_breaker(delivery.subscription_id)
        try:
            async with breaker:
                attempt = await self._sender.send(url, secrets, delivery.event)
                self._metrics.webhook_seconds.observe(attempt.duration_s)
                self.attempts += 1
                if attempt.outcome == "retry":
                    raise EndpointFailure(attempt)
        except OpenedState as opened:
            reopen = (opened.opened_at or time.time()) + self._breaker_reset_s
            due = max(reopen, time.time()) + random.uniform(0.0, min(1.0, self._breaker_reset_s / 10))
            self._metrics.webhook_deliveries.labels(outcome="circuit_open").inc()
            await self._queue.reschedule(delivery.id, due, delivery.attempts, delivery.last_error or "circuit_open")
            return
        except EndpointFailure as failure:
            await self._failed(delivery, failure.attempt)
            return
        attempts = delivery.attempts + 1
        if attempt.outcome == "delivered":
            self._metrics.webhook_deliveries.labels(outcome="delivered").inc()
            emitted = delivery.event.emitted_at
            if emitted.tzinfo is None:
                emitted = emitted.replace(tzinfo=UTC)
            self._metrics.webhook_event_to_post_seconds.observe(
                max(0.0, attempt.started - emitted.timestamp()))
            await self._queue.delivered(delivery.id, attempts)
            return
        self._metrics.webhook_deliveries.labels(outcome="rejected").inc()
        log.warning("webhook rejected", extra=log_fields(
            status=attempt.status, reason=attempt.error, attempt=attempts, subscription_id=delivery.subscription_id,
            event_id=delivery.event.event_id))
        await self._dead_letter(delivery, attempts, attempt.error)

    async def _failed(self, delivery: Delivery, attempt: Attempt) -> None:
        attempts = delivery.attempts + 1
        self._metrics.webhook_deliveries.labels(outcome="retry").inc()
        if attempts >= self._max_attempts:
            await self._dead_letter(delivery, attempts, attempt.error)
            return
        delay = self._backoff.delay(attempts, attempt.retry_after_s)
        log.info("webhook attempt failed", extra=log_fields(
            status=attempt.status, reason=attempt.error, attempt=attempts, retry_in_s=round(delay, 3),
            subscription_id=delivery.subscription_id, event_id=delivery.event.event_id))
        await self._queue.reschedule(delivery.id, time.time() + delay, attempts, attempt.error)

    async def _dead_letter(self, delivery: Delivery, attempts: int, error: str) -> None:
        letter = WebhookDeadLetterV1(subscription_id=delivery.subscription_id, event=delivery.event,
                                     attempts=max(1, attempts), last_error=error[:300] or "failed",
                                     failed_at=datetime.now(UTC))
        try:
            await self._publisher.publish(letter)
        except (BrokerUnavailable, Backpressure) as exc:
            log.warning("dead letter not published, keeping the delivery", extra=log_fields(
                error_type=type(exc).__name__, retry_in_s=DLQ_RETRY_S))
            await self._queue.reschedule(delivery.id, time.time() + DLQ_RETRY_S, attempts, error,
                                         final=error or "failed")
            return
        self._metrics.webhook_deliveries.labels(outcome="dead_letter").inc()
        log.warning("webhook dead-lettered", extra=log_fields(
            reason=error, attempt=attempts, subscription_id=delivery.subscription_id, event_id=delivery.event.event_id))
        await self._queue.dead(delivery.id, attempts, error)
