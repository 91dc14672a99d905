"""Pure parts of webhook delivery: back-off bounds, Retry-After, status classification,
subscription filters and URL validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.webhooks.backoff import Backoff, parse_retry_after
from streamdx_alerts.webhooks.sender import classify_status
from streamdx_alerts.webhooks.subscriptions import SubscriptionCreate, SubscriptionView, matches
from streamdx_alerts.webhooks.urls import UnsafeAddress, validate_url

T0 = datetime(2026, 1, 2, tzinfo=UTC)


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    random.seed(7)
    b = Backoff(0.5, 60.0)
    for attempts in range(1, 15):
        ceiling = min(60.0, 0.5 * 2 ** (attempts - 1))
        assert b.ceiling(attempts) == ceiling
        samples = [b.delay(attempts) for _ in range(300)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # full jitter: spread over the whole window, not clustered at the top
        assert min(samples) < 0.2 * ceiling and max(samples) > 0.8 * ceiling


def test_plain_exponential_without_jitter() -> None:
    b = Backoff(0.2, 5.0, jitter=False)
    assert [b.delay(n) for n in range(1, 8)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_retry_after_is_honoured_and_capped() -> None:
    b = Backoff(0.5, 30.0)
    assert b.delay(1, retry_after_s=7.0) == 7.0
    assert b.delay(9, retry_after_s=3600.0) == 30.0
    assert b.delay(1, retry_after_s=-5.0) == 0.0


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    when = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(when, now) == pytest.approx(90.0)
    assert parse_retry_after((now - timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered"), (201, "delivered"), (204, "delivered"), (299, "delivered"),
    (400, "rejected"), (401, "rejected"), (403, "rejected"), (404, "rejected"), (410, "rejected"), (422, "rejected"),
    (408, "retry"), (409, "retry"), (425, "retry"), (429, "retry"),
    (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"),
    (301, "rejected"), (302, "rejected"), (100, "rejected"),
])
def test_status_classification(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


def _event(kind: str = "af_episode", severity: str = "warning", stream: str = "s1") -> AlertEventV1:
    return AlertEventV1(alert_id=f"{stream}:{kind}:1", seq=0, stream_id=stream, kind=kind, state="raised",  # type: ignore[arg-type]
                        severity=severity, technical=False, started_at=T0, criterion_at=T0,  # type: ignore[arg-type]
                        emitted_at=T0, rule=f"default/{kind}", message="m")


def _sub(**kw: object) -> SubscriptionView:
    base: dict[str, object] = {"id": "sub_0123456789abcdef", "url": "https://example.com/h", "created_at": T0,
                               "updated_at": T0}
    return SubscriptionView.model_validate({**base, **kw})


@pytest.mark.parametrize(("sub", "ev", "expected"), [
    ({}, {}, True),
    ({"enabled": False}, {}, False),
    ({"kinds": ["af_episode"]}, {}, True),
    ({"kinds": ["bradycardia", "pause"]}, {}, False),
    ({"min_severity": "warning"}, {"severity": "warning"}, True),
    ({"min_severity": "warning"}, {"severity": "info"}, False),
    ({"min_severity": "critical"}, {"severity": "warning"}, False),
    ({"min_severity": "info"}, {"severity": "critical"}, True),
    ({"stream_ids": ["s1", "s2"]}, {"stream": "s2"}, True),
    ({"stream_ids": ["s1"]}, {"stream": "s3"}, False),
    ({"stream_ids": []}, {"stream": "s3"}, True),
    ({"kinds": ["vt_run"], "min_severity": "critical"}, {"kind": "vt_run", "severity": "critical"}, True),
])
def test_filter_matching(sub: dict[str, object], ev: dict[str, str], expected: bool) -> None:
    assert matches(_sub(**sub), _event(**ev)) is expected


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/streamdx", "http://example.com:8080/a?b=c", "https://8.8.8.8/x",
    "https://[2001:4860:4860::8888]/x",
])
def test_public_urls_accepted(url: str) -> None:
    assert validate_url(url, allow_private=False) == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9000/h", "http://localhost/h", "http://api.localhost/h", "http://10.1.2.3/h",
    "http://192.168.0.10/h", "http://172.16.5.4/h", "http://169.254.169.254/latest/meta-data", "http://[::1]/h",
    "http://[::ffff:127.0.0.1]/h", "http://0.0.0.0/h", "http://100.64.0.1/h",
])
def test_private_hosts_need_the_setting(url: str) -> None:
    with pytest.raises(UnsafeAddress):
        validate_url(url, allow_private=False)
    assert validate_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "example.com/h", "https://",
    "https://user:pw@example.com/h", "https://example.com/h#frag", "https://example.com:99999/h",
    "https://example.com/" + "a" * 2100,
])
def test_malformed_urls_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        validate_url(url, allow_private=True)


def test_create_model_rejects_unknown_kind_and_dedups_kinds() -> None:
    spec = SubscriptionCreate(url="https://example.com/h", kinds=["pause", "af_episode", "pause"])  # type: ignore[list-item]
    assert spec.kinds == ["af_episode", "pause"]
    with pytest.raises(ValueError):
        SubscriptionCreate(url="https://example.com/h", kinds=["sneezing"])  # type: ignore[list-item]


def test_signing_secrets_during_and_after_the_rotation_grace() -> None:
    from pydantic import SecretStr

    from streamdx_alerts.webhooks.subscriptions import Subscription

    sub = Subscription.model_validate({"id": "sub_0123456789abcdef", "url": "https://example.com/h",
                                       "created_at": T0, "updated_at": T0, "secret": "whsec_" + "A" * 32})
    assert sub.signing_secrets() == ["whsec_" + "A" * 32]
    rotated = sub.model_copy(update={"secret": SecretStr("whsec_" + "B" * 32), "previous_secret": sub.secret,
                                     "previous_until": T0 + timedelta(hours=24)})
    assert rotated.signing_secrets(T0) == ["whsec_" + "B" * 32, "whsec_" + "A" * 32]
    assert rotated.signing_secrets(T0 + timedelta(hours=25)) == ["whsec_" + "B" * 32]
    assert "AAAA" not in rotated.view().model_dump_json() and "BBBB" not in repr(rotated)
    assert Subscription.model_validate_json(rotated.to_json()) == rotated
