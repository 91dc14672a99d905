"""``streamdx devices create DEVICE_ID``: create or rotate a device's API key in Redis."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from streamdx_ingest.admin import DEVICE_ID_HELP, device_registry

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdx devices create",
        description="Create a device's API key (or replace its key) in the Redis named by REDIS_URL and print it. "
        "The key is shown only this once; only its hash is stored.",
    )
    parser.add_argument("device_id", help=DEVICE_ID_HELP)
    return parser


async def _create(device_id: str) -> int:
    async with device_registry() as registry:
        key = await registry.create(device_id)
    print(f"device {device_id} key (shown once): {key}")
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(_create(args.device_id))
