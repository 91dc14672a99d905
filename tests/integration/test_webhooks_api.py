"""The subscription API on a real server and Redis: admin auth, CRUD, validation, and the
secret shown once (never by GET/list, never in logs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from streamdx_alerts.api.subscriptions import include_subscriptions_api
from streamdx_alerts.settings import AlertsSettings
from streamdx_alerts.webhooks.signing import new_secret, validate_secret
from tests.conftest import StackInfo
from tests.integration.servers import serve

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(stack: StackInfo, redis: Redis, **settings: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    base: dict[str, Any] = {"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url,
                            "alerts_admin_token": TOKEN, "webhook_allow_private": False}
    include_subscriptions_api(app, AlertsSettings(**{**base, **settings}), redis)
    return app


@pytest.fixture
async def api(stack: StackInfo, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_app(stack, redis)) as base, httpx.AsyncClient(base_url=base) as client:
        yield client


async def test_auth_required(api: httpx.AsyncClient, stack: StackInfo, redis: Redis) -> None:
    for method, path in [("GET", "/v1/subscriptions"), ("POST", "/v1/subscriptions"),
                         ("GET", "/v1/subscriptions/sub_0123456789abcdef"), ("GET", "/v1/deliveries/dead"),
                         ("DELETE", "/v1/subscriptions/sub_0123456789abcdef"),
                         ("POST", "/v1/subscriptions/sub_0123456789abcdef/rotate-secret")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
            r = await api.request(method, path, headers=headers, json={"url": "https://example.com/h"})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    async with serve(make_app(stack, redis, alerts_admin_token=None)) as base, httpx.AsyncClient(base_url=base) as c:
        r = await c.get("/v1/subscriptions", headers=AUTH)
        assert r.status_code == 503 and "ALERTS_ADMIN_TOKEN" in r.text


async def test_crud_round_trip_and_secret_shown_once(api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"url": "https://hooks.example.com/streamdx", "description": "ward 3", "kinds": ["af_episode", "pause"],
            "min_severity": "warning", "stream_ids": ["holter-7:MLII"]}
    r = await api.post("/v1/subscriptions", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert validate_secret(secret) == secret
    sub_id = created["id"]
    assert created["url"] == body["url"] and created["kinds"] == ["af_episode", "pause"]
    assert created["enabled"] is True and created["min_severity"] == "warning"

    r = await api.get(f"/v1/subscriptions/{sub_id}", headers=AUTH)
    assert r.status_code == 200 and "secret" not in r.json() and secret not in r.text
    assert r.json()["stream_ids"] == ["holter-7:MLII"]
    r = await api.get("/v1/subscriptions", headers=AUTH)
    assert r.status_code == 200 and sub_id in [s["id"] for s in r.json()] and secret not in r.text
    assert all("secret" not in s for s in r.json())

    r = await api.patch(f"/v1/subscriptions/{sub_id}", json={"enabled": False, "kinds": []}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False and r.json()["kinds"] == [] and r.json()["description"] == "ward 3"
    assert "secret" not in r.json()
    r = await api.patch(f"/v1/subscriptions/{sub_id}", json={"url": "https://other.example.com/x"}, headers=AUTH)
    assert r.json()["url"] == "https://other.example.com/x"

    r = await api.post(f"/v1/subscriptions/{sub_id}/rotate-secret", headers=AUTH)
    assert r.status_code == 200
    rotated = r.json()["secret"]
    assert rotated != secret and validate_secret(rotated) == rotated
    chosen = new_secret()
    r = await api.post(f"/v1/subscriptions/{sub_id}/rotate-secret", json={"secret": chosen}, headers=AUTH)
    assert r.status_code == 200 and r.json()["secret"] == chosen
    r = await api.post(f"/v1/subscriptions/{sub_id}/rotate-secret", json={"secret": "whsec_short"}, headers=AUTH)
    assert r.status_code == 422 and "whsec_short" not in r.text
    r = await api.get(f"/v1/subscriptions/{sub_id}", headers=AUTH)
    assert chosen not in r.text and rotated not in r.text

    assert (await api.delete(f"/v1/subscriptions/{sub_id}", headers=AUTH)).status_code == 204
    assert (await api.get(f"/v1/subscriptions/{sub_id}", headers=AUTH)).status_code == 404
    assert (await api.delete(f"/v1/subscriptions/{sub_id}", headers=AUTH)).status_code == 404
    assert (await api.patch(f"/v1/subscriptions/{sub_id}", json={"enabled": True}, headers=AUTH)).status_code == 404
    r = await api.post(f"/v1/subscriptions/{sub_id}/rotate-secret", headers=AUTH)
    assert r.status_code == 404

    logged = caplog.text + "".join(str(rec.__dict__) for rec in caplog.records)
    for s in (secret, rotated, chosen):
        assert s not in logged and s[6:] not in logged


async def test_admin_supplied_secret(api: httpx.AsyncClient) -> None:
    secret = new_secret(24)
    r = await api.post("/v1/subscriptions", json={"url": "https://example.com/h", "secret": secret}, headers=AUTH)
    assert r.status_code == 201 and r.json()["secret"] == secret
    assert (await api.delete(f"/v1/subscriptions/{r.json()['id']}", headers=AUTH)).status_code == 204


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/h"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "http://127.0.0.1:8080/h"}, "url"),  # loopback: WEBHOOK_ALLOW_PRIVATE is off
    ({"url": "http://169.254.169.254/latest"}, "url"),
    ({"url": "https://user:pw@example.com/h"}, "url"),
    ({"url": "https://example.com/h", "kinds": ["sneezing"]}, "kinds"),
    ({"url": "https://example.com/h", "min_severity": "fatal"}, "min_severity"),
    ({"url": "https://example.com/h", "stream_ids": ["bad id!"]}, "stream_ids"),
    ({"url": "https://example.com/h", "secret": "whsec_dG9vc2hvcnQ="}, "secret"),
    ({"url": "https://example.com/h", "unknown": 1}, "unknown"),
    ({}, "url"),
])
async def test_validation_errors_are_422(api: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    r = await api.post("/v1/subscriptions", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert any(field in [str(x) for x in err["loc"]] for err in r.json()["detail"]), r.json()
    if "secret" in body:
        assert body["secret"] not in r.text  # errors never echo the submitted values


async def test_patch_validation(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/subscriptions", json={"url": "https://example.com/h"}, headers=AUTH)
    sub_id = r.json()["id"]
    try:
        for patch in ({"url": "http://10.0.0.1/h"}, {"kinds": ["nope"]}, {"enabled": None}, {"secret": "x"}):
            r = await api.patch(f"/v1/subscriptions/{sub_id}", json=patch, headers=AUTH)
            assert r.status_code == 422, (patch, r.text)
    finally:
        await api.delete(f"/v1/subscriptions/{sub_id}", headers=AUTH)


async def test_private_urls_allowed_when_configured(stack: StackInfo, redis: Redis) -> None:
    app = make_app(stack, redis, webhook_allow_private=True)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/h"}, headers=AUTH)
        assert r.status_code == 201
        assert (await c.delete(f"/v1/subscriptions/{r.json()['id']}", headers=AUTH)).status_code == 204
        r = await c.get("/v1/deliveries/dead", headers=AUTH)
        assert r.status_code == 200 and isinstance(r.json(), list)
