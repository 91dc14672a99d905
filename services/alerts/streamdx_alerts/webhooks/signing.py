"""Standard Webhooks signing: secrets, the JSON body and the request headers.

A secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes (the format every
Standard Webhooks / Svix verifier accepts). The signature is ``v1,<base64 HMAC-SHA256>`` of
``{webhook-id}.{webhook-timestamp}.{body}`` computed by :class:`standardwebhooks.webhooks.Webhook`.

``webhook-id`` is the alert event id (``alert_id:seq``), identical on every attempt of the
same event to the same endpoint: delivery is at-least-once, and receivers de-duplicate on it
(it is also sent as ``idempotency-key``). ``webhook-timestamp`` is the time of the attempt.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from streamdx.schemas.alerts import AlertEventV1

__all__ = [
    "SECRET_MAX_BYTES",
    "SECRET_MIN_BYTES",
    "SECRET_PREFIX",
    "USER_AGENT",
    "event_type",
    "new_secret",
    "payload_bytes",
    "signed_headers",
    "validate_secret",
]

SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
USER_AGENT = "StreamDx-Webhooks/1"
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def new_secret(nbytes: int = 32) -> str:
    """A fresh signing secret ``whsec_<base64 of nbytes random bytes>``.

    Parameters
    ----------
    nbytes : int
        Random bytes (from :mod:`secrets`), between 24 and 64.
    """
    if not SECRET_MIN_BYTES <= nbytes <= SECRET_MAX_BYTES:
        raise ValueError(f"a secret has {SECRET_MIN_BYTES}..{SECRET_MAX_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def validate_secret(value: str) -> str:
    """``value`` if it is a well-formed secret, else :class:`ValueError` (the message never holds it).

    Parameters
    ----------
    value : str
        ``whsec_`` + standard base64 of 24 to 64 bytes.
    """
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with {SECRET_PREFIX!r}")
    body = value[len(SECRET_PREFIX):]
    if not _B64.match(body):
        raise ValueError("a secret is whsec_ followed by standard base64")
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a secret is whsec_ followed by standard base64") from None
    if not SECRET_MIN_BYTES <= len(raw) <= SECRET_MAX_BYTES:
        raise ValueError(f"a secret encodes {SECRET_MIN_BYTES}..{SECRET_MAX_BYTES} bytes")
    return value


def event_type(event: AlertEventV1) -> str:
    """The Standard Webhooks ``type`` of an event: ``alert.raised``, ``alert.updated``, ``alert.resolved``."""
    return f"alert.{event.state}"


def payload_bytes(event: AlertEventV1) -> bytes:
    """The JSON body ``{"type", "timestamp", "data"}`` POSTed for ``event``.

    ``timestamp`` is the event's emission time (ISO 8601, UTC); ``data`` is the event as on
    the ``alerts.events`` topic, plus its ``event_id``. The bytes are deterministic, so every
    attempt sends the same body.
    """
    data: dict[str, Any] = event.model_dump(mode="json")
    data["event_id"] = event.event_id
    body = {
        "type": event_type(event),
        "timestamp": event.emitted_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def signed_headers(secret: str | Sequence[str], event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The headers of one attempt: ``webhook-id``/``-timestamp``/``-signature`` and friends.

    Parameters
    ----------
    secret : str or sequence of str
        The subscription's ``whsec_`` secret, or several (during a rotation): one signature
        each, space-separated, current first.
    event_id : str
        The event id (``webhook-id`` and ``idempotency-key``).
    body : bytes
        The exact body that is sent.
    now : datetime
        The attempt time (``webhook-timestamp``, whole seconds).
    """
    keys = [secret] if isinstance(secret, str) else list(secret)
    signature = " ".join(Webhook(k).sign(event_id, now, body) for k in keys)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "idempotency-key": event_id,
        "user-agent": USER_AGENT,
    }
