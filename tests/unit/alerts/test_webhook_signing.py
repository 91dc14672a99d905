"""Webhook payload and signature: the body, the headers, and verification by an independent
HMAC computation and by the off-the-shelf svix verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.webhooks.signing import (
    USER_AGENT,
    event_type,
    new_secret,
    payload_bytes,
    signed_headers,
    validate_secret,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(state: str = "raised", seq: int = 0) -> AlertEventV1:
    return AlertEventV1(
        alert_id="s1:af_episode:1", seq=seq, stream_id="s1", kind="af_episode", state=state, severity="warning",  # type: ignore[arg-type]
        technical=False, started_at=T0, criterion_at=T0 + timedelta(seconds=30), emitted_at=T0 + timedelta(seconds=31),
        rule="default/af_episode", message="AF for 30 s", details={"hr_bpm": 121.5},
    )


def test_payload_is_the_standard_webhooks_envelope() -> None:
    ev = event("resolved", seq=2)
    body = json.loads(payload_bytes(ev))
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "alert.resolved" == event_type(ev)
    assert body["timestamp"] == "2026-01-02T03:04:36Z"
    assert body["data"]["event_id"] == "s1:af_episode:1:2"
    assert AlertEventV1.model_validate({k: v for k, v in body["data"].items() if k != "event_id"}) == ev


def test_payload_bytes_are_deterministic() -> None:
    assert payload_bytes(event()) == payload_bytes(event())


def test_headers_and_signature_by_hand() -> None:
    secret = new_secret()
    ev = event()
    body = payload_bytes(ev)
    headers = signed_headers(secret, ev.event_id, body, T0)
    assert headers["webhook-id"] == headers["idempotency-key"] == ev.event_id
    assert headers["webhook-timestamp"] == str(int(T0.timestamp()))
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{ev.event_id}.{int(T0.timestamp())}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_svix_verifies_and_rejects_wrong_secret_or_tampering() -> None:
    secret = new_secret()
    ev = event()
    body = payload_bytes(ev)
    headers = signed_headers(secret, ev.event_id, body, datetime.now(UTC))
    SvixWebhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(secret).verify(body.replace(b"warning", b"critical"), headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(secret).verify(body, {**headers, "webhook-id": "other:0"})


def test_new_secret_format() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_")
    assert len(base64.b64decode(a[6:])) == 32
    assert validate_secret(a) == a
    with pytest.raises(ValueError):
        new_secret(16)


@pytest.mark.parametrize("bad", [
    "", "whsec_", "secret", "whsec_" + base64.b64encode(b"x" * 16).decode(),  # too short
    "whsec_" + base64.b64encode(b"x" * 65).decode(), "whsec_not base64!",
    "WHSEC_" + base64.b64encode(b"x" * 32).decode(),
])
def test_bad_secrets_rejected_without_echo(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_secret(bad)
    if len(bad) > 6:
        assert bad[6:] not in str(info.value)


def test_rotation_signs_with_both_secrets() -> None:
    old, new = new_secret(), new_secret()
    ev = event()
    body = payload_bytes(ev)
    headers = signed_headers([new, old], ev.event_id, body, datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    SvixWebhook(new).verify(body, headers)
    SvixWebhook(old).verify(body, headers)  # a receiver that has not switched yet
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(new_secret()).verify(body, headers)
