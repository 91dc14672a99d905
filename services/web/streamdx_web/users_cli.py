"""``streamdx web add-user NAME``: create an operator account or set its password."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx web add-user",
        description="Create a console operator account (or set a new password) in Redis (REDIS_URL). The "
        "password (at least 10 characters) is read from the terminal, or from stdin with --password-stdin; "
        "only its argon2id hash is stored.",
    )
    p.add_argument("name", help="operator log-in name (1-64 characters of A-Z a-z 0-9 . _ @ -)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from redis.asyncio import Redis

    from streamdx_web.settings import WebSettings
    from streamdx_web.users import UserStore

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")

    async def run() -> None:
        redis = Redis.from_url(WebSettings().redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            await UserStore(redis).set_password(args.name, password)
        finally:
            await redis.aclose()

    try:
        asyncio.run(run())
    except ValueError as exc:
        print(f"streamdx web add-user: {exc}", file=sys.stderr)
        return 2
    print(f"operator {args.name} saved")
    return 0
