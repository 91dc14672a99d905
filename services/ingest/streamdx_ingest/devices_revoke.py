"""``streamdx devices revoke DEVICE_ID``: revoke a device's API key in Redis."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from streamdx_ingest.admin import DEVICE_ID_HELP, device_registry

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdx devices revoke",
        description="Revoke a device's API key in the Redis named by REDIS_URL: its requests then get 403.",
    )
    parser.add_argument("device_id", help=DEVICE_ID_HELP)
    return parser


async def _revoke(device_id: str) -> int:
    async with device_registry() as registry:
        revoked = await registry.revoke(device_id)
    print(f"device {device_id} revoked" if revoked else f"no such device: {device_id}")
    return 0 if revoked else 1


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(_revoke(args.device_id))
