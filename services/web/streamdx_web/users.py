"""Operator accounts in Redis: names and argon2id password hashes (never the passwords).

Layout: hash ``sdx:web:users`` name → argon2 hash. Names are operator log-in names
(``[A-Za-z0-9._@-]{1,64}``), not patient data.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

__all__ = ["USERNAME", "UserStore"]

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_KEY = "sdx:web:users"
_HASHER = PasswordHasher()
#: Verified against when the name is unknown, so a wrong name and a wrong password take the same time.
_DUMMY = _HASHER.hash("streamdx-no-such-user")


class UserStore:
    """Create, check and remove operator accounts (Redis client injected)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def set_password(self, name: str, password: str) -> None:
        """Create the account or replace its password.

        Raises
        ------
        ValueError
            On an invalid name or a password shorter than 10 characters.
        """
        if not USERNAME.match(name):
            raise ValueError("user names are 1-64 characters of A-Z a-z 0-9 . _ @ -")
        if len(password) < 10:
            raise ValueError("passwords have at least 10 characters")
        await self._redis.hset(_KEY, name, _HASHER.hash(password))

    async def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is the account's (constant work for unknown names)."""
        stored = await self._redis.hget(_KEY, name) if USERNAME.match(name) else None
        hashed = stored.decode() if isinstance(stored, bytes) else stored
        try:
            return _HASHER.verify(hashed or _DUMMY, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    async def remove(self, name: str) -> bool:
        return bool(await self._redis.hdel(_KEY, name))

    async def names(self) -> list[str]:
        raw = await self._redis.hkeys(_KEY)
        return sorted(n.decode() if isinstance(n, bytes) else n for n in raw)
