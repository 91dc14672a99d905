"""``streamdx devices create|revoke DEVICE_ID``: manage device keys directly in Redis."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from streamdx_ingest.devices import DeviceRegistry
from streamdx_ingest.settings import IngestSettings

__all__ = ["create_main", "revoke_main"]


async def _with_registry(action: str, device_id: str) -> int:
    settings = IngestSettings()
    redis = Redis.from_url(settings.redis_url)
    try:
        registry = DeviceRegistry(redis)
        if action == "create":
            key = await registry.create(device_id)
            print(f"device {device_id} key (shown once): {key}")
            return 0
        if await registry.revoke(device_id):
            print(f"device {device_id} revoked")
            return 0
        print(f"no such device: {device_id}")
        return 1
    finally:
        await redis.aclose()


def _parse(prog: str, argv: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("device_id")
    return str(parser.parse_args(argv).device_id)


def create_main(argv: Sequence[str]) -> int:
    return asyncio.run(_with_registry("create", _parse("streamdx devices create", argv)))


def revoke_main(argv: Sequence[str]) -> int:
    return asyncio.run(_with_registry("revoke", _parse("streamdx devices revoke", argv)))
