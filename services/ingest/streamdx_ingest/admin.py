"""Device keys managed directly in Redis (``streamdx devices create|revoke``), without the HTTP API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from streamdx_ingest.devices import DeviceRegistry
from streamdx_ingest.settings import IngestSettings

__all__ = ["DEVICE_ID_HELP", "device_registry"]

DEVICE_ID_HELP = "device id (letters, digits, '.', '_', ':' or '-'; never a patient identifier)"


@contextlib.asynccontextmanager
async def device_registry() -> AsyncIterator[DeviceRegistry]:
    """The device registry on the Redis named by ``REDIS_URL``."""
    redis = Redis.from_url(IngestSettings().redis_url)
    try:
        yield DeviceRegistry(redis)
    finally:
        await redis.aclose()
