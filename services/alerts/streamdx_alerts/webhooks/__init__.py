"""Signed webhook delivery of alert events (Standard Webhooks) and the subscription store.

Modules, each importable on its own (nothing heavy is imported here, so ``--help`` of the
replay command stays fast):

* :mod:`.signing` — secrets (``whsec_…``), the JSON payload and the signed headers;
* :mod:`.urls` — validation of subscription URLs (scheme, loopback/private hosts);
* :mod:`.subscriptions` — subscription models, filter matching and the Redis store;
* :mod:`.queue` — the durable Redis delivery queue (idempotent enqueue, leases, retries);
* :mod:`.backoff` — retry delays (exponential, full jitter, ``Retry-After``);
* :mod:`.sender` — one signed POST and the classification of its outcome;
* :mod:`.handler` — the :class:`~streamdx.messaging.worker.StreamWorker` handler on ``alerts.events``;
* :mod:`.dispatcher` — the task that POSTs due deliveries (bounded concurrency, circuit breakers);
* :mod:`.service` — composition: :func:`~.service.build_webhook_delivery`;
* :mod:`.replay` — ``streamdx alerts replay``: dead letters back into the queue.
"""

__all__: list[str] = []
