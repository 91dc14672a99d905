"""Per-device API keys, stored hashed in Redis.

A key is shown once, at creation; Redis keeps only its SHA-256. A device may publish to
the stream ``device_id`` and to ``device_id:<lead>``.

Layout::

    sdx:device:{device_id}     hash  key_hash, status (active|revoked), created
    sdx:devkey:{sha256(key)}   string device_id
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

__all__ = ["DeviceAuth", "DeviceRegistry", "KeyRevoked", "KeyUnknown", "stream_allowed"]


class KeyUnknown(PermissionError):
    """No such key (HTTP 401)."""


class KeyRevoked(PermissionError):
    """The key existed and was revoked (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    device_id: str


# One round trip. It touches a key not listed in KEYS, so it needs a non-cluster Redis (as deployed).
_LOOKUP = """
local device = redis.call('GET', KEYS[1])
if not device then return nil end
local info = redis.call('HMGET', 'sdx:device:' .. device, 'key_hash', 'status')
return {device, info[1] or '', info[2] or ''}
"""

# The same for many keys in one round trip (KEYS: their sdx:devkey entries); {} for an unknown key.
_LOOKUP_MANY = """
local out = {}
for i = 1, #KEYS do
  local device = redis.call('GET', KEYS[i])
  if device then
    local info = redis.call('HMGET', 'sdx:device:' .. device, 'key_hash', 'status')
    out[i] = {device, info[1] or '', info[2] or ''}
  else
    out[i] = {}
  end
end
return out
"""


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def stream_allowed(device_id: str, stream_id: str) -> bool:
    """A device may write ``device_id`` and ``device_id:<anything>``."""
    return stream_id == device_id or stream_id.startswith(device_id + ":")


class DeviceRegistry:
    """Create, revoke and check device keys (Redis client injected)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._lookup = redis.register_script(_LOOKUP)
        self._lookup_many = redis.register_script(_LOOKUP_MANY)

    async def create(self, device_id: str) -> str:
        """Create (or rotate) the key of ``device_id``; returns the key, shown only once."""
        api_key = "sdx_" + secrets.token_urlsafe(32)
        old = await self._redis.hget(f"sdx:device:{device_id}", "key_hash")
        pipe = self._redis.pipeline(transaction=True)
        if old:
            pipe.delete(f"sdx:devkey:{old.decode() if isinstance(old, bytes) else old}")
        pipe.hset(
            f"sdx:device:{device_id}",
            mapping={"key_hash": _hash(api_key), "status": "active", "created": str(time.time())},
        )
        pipe.set(f"sdx:devkey:{_hash(api_key)}", device_id)
        await pipe.execute()
        return api_key

    async def revoke(self, device_id: str) -> bool:
        """Revoke the device's key; ``False`` when the device does not exist."""
        key = f"sdx:device:{device_id}"
        if not await self._redis.exists(key):
            return False
        await self._redis.hset(key, "status", "revoked")
        return True

    async def authenticate(self, api_key: str | None) -> DeviceAuth:
        """Resolve a presented key; raise :class:`KeyUnknown` or :class:`KeyRevoked`."""
        if not api_key:
            raise KeyUnknown("missing API key")
        digest = _hash(api_key)
        found = await self._lookup(keys=[f"sdx:devkey:{digest}"])  # one round trip
        if not found:
            raise KeyUnknown("unknown API key")
        return _resolve(found, digest)

    async def authenticate_many(self, api_keys: list[str]) -> list[DeviceAuth | KeyUnknown | KeyRevoked]:
        """:meth:`authenticate` for many keys in one round trip: per key its device, or the error."""
        if not api_keys:
            return []
        digests = [_hash(k) for k in api_keys]
        rows = await self._lookup_many(keys=[f"sdx:devkey:{d}" for d in digests])
        out: list[DeviceAuth | KeyUnknown | KeyRevoked] = []
        for key, digest, row in zip(api_keys, digests, rows, strict=True):
            try:
                if not key or not row:
                    raise KeyUnknown("unknown API key")
                out.append(_resolve(row, digest))
            except (KeyUnknown, KeyRevoked) as exc:
                out.append(exc)
        return out


def _resolve(found: list[bytes | str], digest: str) -> DeviceAuth:
    """The device of a lookup row ``(device_id, key_hash, status)``; raise when it does not authorise."""
    device_id, stored, status = (v.decode() if isinstance(v, bytes) else str(v or "") for v in found)
    if not hmac.compare_digest(stored, digest):
        raise KeyUnknown("unknown API key")
    if status != "active":
        raise KeyRevoked("API key revoked")
    return DeviceAuth(device_id=device_id)
