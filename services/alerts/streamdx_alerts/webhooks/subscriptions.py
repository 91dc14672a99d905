"""Webhook subscriptions: models, filter matching and the Redis store.

A subscription is an endpoint URL, filters (alert kinds, minimum severity, stream ids), an
``enabled`` flag and a signing secret. The secret is generated server-side (or supplied by
the administrator) and shown once, in the response that creates or rotates it; the public
view (:class:`SubscriptionView`) never contains it and the in-memory record holds it as a
:class:`~pydantic.SecretStr`, so it cannot slip into a log line or a ``repr``.

Secrets at rest: the secret is needed in clear to sign, so it is stored as is in Redis.
Redis must therefore be protected like a secret store (network isolation, ``requirepass``/
ACLs, no public snapshot). A secret believed exposed is replaced with
``POST /v1/subscriptions/{id}/rotate-secret``. After a rotation the previous secret keeps
signing too for ``ROTATION_GRACE_S`` (24 h): each request then carries two signatures
(``v1,<new> v1,<old>``, as Standard Webhooks allows), so a receiver that has not switched yet
still verifies; an exposed secret is dropped at once by rotating twice.

Layout::

    sdx:webhooks:sub:{id}        string  JSON of the subscription, secret included
    sdx:webhooks:subs            set     subscription ids
    sdx:webhooks:subs:version    int     incremented on every change (cache invalidation)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from streamdx.schemas.alerts import AlertEventV1, AlertKind, Severity
from streamdx_alerts.webhooks.signing import validate_secret
from streamdx_alerts.webhooks.urls import validate_url

__all__ = [
    "ROTATION_GRACE_S",
    "SEVERITY_RANK",
    "Subscription",
    "SubscriptionCreate",
    "SubscriptionCreated",
    "SubscriptionStore",
    "SubscriptionUpdate",
    "SubscriptionView",
    "matches",
    "new_subscription_id",
]

#: Seconds the previous secret keeps signing after a rotation.
ROTATION_GRACE_S = 24 * 3600
SEVERITY_RANK: Mapping[str, int] = {"info": 0, "warning": 1, "critical": 2}
StreamId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
SubscriptionId = Annotated[str, Field(pattern=r"^sub_[0-9a-f]{16}$")]
_PREFIX = "sdx:webhooks:"


def new_subscription_id() -> str:
    """``sub_`` + 16 random hex digits."""
    return "sub_" + secrets.token_hex(8)


def _url(value: str) -> str:
    # syntax only here; loopback/private hosts are checked by the API with the service setting
    return validate_url(value, allow_private=True)


def _kinds(value: list[str]) -> list[str]:
    return sorted(set(value))


class _Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=200, description="Free text for operators")
    kinds: list[AlertKind] = Field(default_factory=list, max_length=32,
                                   description="Alert kinds delivered (empty: every kind)")
    min_severity: Severity = Field(default="info", description="Lowest severity delivered")
    stream_ids: list[StreamId] | None = Field(default=None, max_length=1000,
                                              description="Streams or tubes delivered (null: every one)")
    enabled: bool = Field(default=True, description="Disabled subscriptions receive nothing")


class SubscriptionCreate(_Filters):
    """Body of ``POST /v1/subscriptions``."""

    url: str = Field(max_length=2048, description="http(s) endpoint that receives the signed POSTs")
    secret: SecretStr | None = Field(
        default=None, description="Signing secret whsec_<base64 of 24..64 bytes> (omit: generated)")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str]) -> list[str]:
        return _kinds(value)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            validate_secret(value.get_secret_value())
        return value


class SubscriptionUpdate(BaseModel):
    """Body of ``PATCH /v1/subscriptions/{id}``: the fields given are replaced."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    description: str | None = Field(default=None, max_length=200)
    kinds: list[AlertKind] | None = Field(default=None, max_length=32)
    min_severity: Severity | None = None
    stream_ids: list[StreamId] | None = Field(default=None, max_length=1000)
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value)

    @field_validator("kinds")
    @classmethod
    def _check_kinds(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _kinds(value)


class SubscriptionView(_Filters):
    """A subscription as the API shows it: never the secret."""

    id: str
    url: str
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionView):
    """The response that creates a subscription or rotates its secret: the only one with the secret."""

    secret: str = Field(description="Signing secret: shown this once, store it in the receiver")


_SECRETS: set[str] = {"secret", "previous_secret", "previous_until"}


class Subscription(SubscriptionView):
    """The stored record (secrets included, as ``SecretStr``)."""

    model_config = ConfigDict(extra="ignore")

    secret: SecretStr
    previous_secret: SecretStr | None = None
    previous_until: datetime | None = None

    def view(self) -> SubscriptionView:
        """The public view (no secret)."""
        return SubscriptionView.model_validate(self.model_dump(exclude=_SECRETS))

    def created_view(self) -> SubscriptionCreated:
        """The view with the secret in clear (create and rotate responses only)."""
        return SubscriptionCreated.model_validate(
            {**self.model_dump(exclude=_SECRETS), "secret": self.secret.get_secret_value()})

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a request now: the current one, and the previous one during its grace."""
        out = [self.secret.get_secret_value()]
        if self.previous_secret is not None and self.previous_until is not None \
                and (now or datetime.now(UTC)) < self.previous_until:
            out.append(self.previous_secret.get_secret_value())
        return out

    def to_json(self) -> str:
        """JSON for Redis, secrets in clear."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude=_SECRETS)
        data["secret"] = self.secret.get_secret_value()
        if self.previous_secret is not None and self.previous_until is not None:
            data["previous_secret"] = self.previous_secret.get_secret_value()
            data["previous_until"] = self.previous_until.isoformat()
        return json.dumps(data, separators=(",", ":"))


def matches(sub: SubscriptionView, event: AlertEventV1) -> bool:
    """Whether ``event`` goes to ``sub``: enabled, kind, severity and stream filters."""
    if not sub.enabled:
        return False
    if sub.kinds and event.kind not in sub.kinds:
        return False
    if SEVERITY_RANK[event.severity] < SEVERITY_RANK[sub.min_severity]:
        return False
    return not sub.stream_ids or event.stream_id in sub.stream_ids


class SubscriptionStore:
    """Subscriptions in Redis (client injected); :meth:`all_cached` serves the hot path.

    Parameters
    ----------
    redis : Redis
        The Redis client.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cache: tuple[object, dict[str, Subscription]] | None = None

    @staticmethod
    def _key(sub_id: str) -> str:
        return f"{_PREFIX}sub:{sub_id}"

    _INDEX = f"{_PREFIX}subs"
    _VERSION = f"{_PREFIX}subs:version"

    @staticmethod
    def _decode(raw: bytes | str | None) -> Subscription | None:
        return None if raw is None else Subscription.model_validate_json(raw)

    async def create(self, spec: SubscriptionCreate, secret: str) -> Subscription:
        """Store a new subscription with ``secret``; returns the record."""
        now = datetime.now(UTC)
        sub = Subscription(id=new_subscription_id(), url=spec.url, description=spec.description, kinds=spec.kinds,
                           min_severity=spec.min_severity, stream_ids=spec.stream_ids, enabled=spec.enabled,
                           created_at=now, updated_at=now, secret=SecretStr(validate_secret(secret)))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(sub.id), sub.to_json())
            pipe.sadd(self._INDEX, sub.id)
            pipe.incr(self._VERSION)
            await pipe.execute()
        return sub

    async def get(self, sub_id: str) -> Subscription | None:
        """The subscription ``sub_id`` or ``None``."""
        return self._decode(await self._redis.get(self._key(sub_id)))

    async def list_all(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        ids = sorted(i.decode() if isinstance(i, bytes) else str(i) for i in await self._redis.smembers(self._INDEX))
        if not ids:
            return []
        raws = await self._redis.mget([self._key(i) for i in ids])
        subs = [s for s in (self._decode(r) for r in raws) if s is not None]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    async def _modify(self, sub_id: str, change: Callable[[Subscription], Subscription]) -> Subscription | None:
        key = self._key(sub_id)
        result: list[Subscription | None] = [None]

        async def apply(pipe: Pipeline) -> None:
            current = self._decode(await pipe.get(key))
            result[0] = None
            if current is None:
                pipe.multi()
                return
            updated = change(current)
            pipe.multi()
            pipe.set(key, updated.to_json())
            pipe.incr(self._VERSION)
            result[0] = updated

        await self._redis.transaction(apply, key)
        return result[0]

    async def update(self, sub_id: str, patch: SubscriptionUpdate) -> Subscription | None:
        """Apply the fields set in ``patch``; ``None`` if there is no such subscription."""
        fields = patch.model_dump(exclude_unset=True)
        for name in ("url", "description", "kinds", "min_severity", "enabled"):
            if name in fields and fields[name] is None:
                raise ValueError(f"{name} may not be null")

        def change(sub: Subscription) -> Subscription:
            return sub.model_copy(update={**fields, "updated_at": datetime.now(UTC)})

        return await self._modify(sub_id, change)

    async def rotate_secret(self, sub_id: str, secret: str, grace_s: float = ROTATION_GRACE_S) -> Subscription | None:
        """Replace the signing secret (effective for the next attempt); ``None`` if unknown.

        The replaced secret keeps signing as a second signature for ``grace_s`` seconds; a
        rotation within the grace period of the last one drops the older secret.
        """
        new = SecretStr(validate_secret(secret))

        def change(sub: Subscription) -> Subscription:
            now = datetime.now(UTC)
            return sub.model_copy(update={"secret": new, "previous_secret": sub.secret,
                                          "previous_until": now + timedelta(seconds=grace_s), "updated_at": now})

        return await self._modify(sub_id, change)

    async def delete(self, sub_id: str) -> bool:
        """Remove the subscription (its queued deliveries are dropped when due); ``False`` if unknown."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(sub_id))
            pipe.srem(self._INDEX, sub_id)
            pipe.incr(self._VERSION)
            deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def all_cached(self) -> Mapping[str, Subscription]:
        """Every subscription by id, reloaded only when the version counter changed (one GET)."""
        version = await self._redis.get(self._VERSION)
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1]
        subs = {s.id: s for s in await self.list_all()}
        self._cache = (version, subs)
        return subs

    async def matching(self, event: AlertEventV1) -> list[Subscription]:
        """The enabled subscriptions whose filters take ``event``."""
        return [s for s in (await self.all_cached()).values() if matches(s, event)]
