"""The alert log on the real broker and Redis: alerts.events → the log (latest by seq,
redeliveries ignored, acks kept across updates) through the alerts service, and the API
(list with each filter, paging, ack, /v1/streams, 401/404/422, retention, TTL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from redis.asyncio import Redis

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import PublisherMetrics
from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.alert_log import AlertFilter, AlertLog
from streamdx_alerts.api.alerts import alerts_router
from streamdx_alerts.settings import AlertsSettings
from tests.conftest import StackInfo
from tests.integration.servers import serve
from tests.integration.test_alert_scenarios import running_alerts

pytestmark = pytest.mark.integration

TOKEN = "alert-log-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def event(stream: str, n: int, seq: int = 0, *, state: str = "raised", kind: str = "af_episode",
          severity: str = "warning", started: datetime = T0, message: str = "", **kw: Any) -> AlertEventV1:
    technical = kind in {"lead_off", "signal_unreadable", "no_data", "data_gap"}
    return AlertEventV1(
        alert_id=f"{stream}:{kind}:{n}", seq=seq, stream_id=stream, kind=kind, state=state,  # type: ignore[arg-type]
        severity=severity, technical=technical, started_at=started,  # type: ignore[arg-type]
        criterion_at=started + timedelta(seconds=seq), ended_at=started + timedelta(seconds=60)
        if state == "resolved" else None, emitted_at=datetime.now(UTC), rule=f"default/{kind}",
        message=message or f"{kind} {n} event {seq}", details={"seq": seq}, **kw,
    )


async def wait_for(predicate: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


# --- through the alerts service: alerts.events → worker → log → API --------------------


async def test_events_reach_the_log_by_seq_redeliveries_ignored_and_ack_survives(stack: StackInfo) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = AlertsSettings(
        kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, batch_timeout_ms=50,
        alerts_rhythm_group=f"al-r-l-{tag}", alerts_status_group=f"al-s-l-{tag}", alerts_esr_group=f"al-e-l-{tag}",
        alerts_delivery_group=f"al-w-l-{tag}", alerts_log_group=f"al-l-{tag}",
        alerts_admin_token=SecretStr(TOKEN),
    )
    stream = f"log-{tag}"
    aid = f"{stream}:af_episode:1"
    pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()))
    await pub.start()
    try:
        async with running_alerts(stack, settings) as base, \
                httpx.AsyncClient(base_url=base, headers=AUTH) as api:  # fmt: skip
            async def at_seq(seq: int) -> dict[str, Any] | None:
                r = await api.get(f"/v1/alerts/{aid}")
                return r.json() if r.status_code == 200 and r.json()["seq"] == seq else None

            await pub.publish(event(stream, 1, 0))
            raised = await wait_for(lambda: at_seq(0))
            assert raised is not None, "the raise never reached the log"
            assert raised["open"] and raised["state"] == "raised" and raised["ack"] is None

            r = await api.post(f"/v1/alerts/{aid}/ack", json={"by": "nurse.anna", "note": "seen, calling dr"})
            assert r.status_code == 200, r.text
            ack = r.json()["ack"]
            assert ack["acked_by"] == "nurse.anna" and ack["note"] == "seen, calling dr"

            await pub.publish(event(stream, 1, 1, state="updated", severity="critical"))
            updated = await wait_for(lambda: at_seq(1))
            assert updated is not None and updated["severity"] == "critical" and updated["ack"] == ack

            # redeliveries of older events, then the resolution: only the resolution counts
            await pub.publish_many([event(stream, 1, 0, message="redelivered"),
                                    event(stream, 1, 1, state="updated", message="redelivered"),
                                    event(stream, 1, 2, state="resolved", severity="critical")])
            done = await wait_for(lambda: at_seq(2))
            assert done is not None, "the resolution never reached the log"
            assert not done["open"] and done["state"] == "resolved" and done["ended_at"] is not None
            assert [h["seq"] for h in done["history"]] == [0, 1, 2]
            assert "redelivered" not in str(done) and done["ack"] == ack
            assert done["raised_at"] == raised["raised_at"]

            r = await api.get("/v1/alerts", params={"stream_id": stream})
            assert [a["alert_id"] for a in r.json()["items"]] == [aid]
            r = await api.get("/v1/streams")
            mine = [s for s in r.json() if s["stream_id"] == stream]
            assert mine == [{"stream_id": stream, "last_alert_id": aid, "last_alert_at": mine[0]["last_alert_at"],
                             "last_kind": "af_episode", "last_severity": "critical", "last_state": "resolved",
                             "open_alerts": 0}]
            assert "/v1/alerts" in (await api.get("/openapi.json")).json()["paths"]
    finally:
        await pub.stop()


# --- the API on its own log (a private key prefix) -----------------------------------------


@dataclass
class LogApi:
    log: AlertLog
    api: httpx.AsyncClient
    base: str


def make_app(alert_log: AlertLog, token: str | None = TOKEN) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(alerts_router())
    app.state.alert_log = alert_log
    app.state.admin_token = SecretStr(token) if token else None
    return app


@pytest.fixture
async def log_api(redis: Redis) -> AsyncIterator[LogApi]:
    prefix = f"test:alertlog:{uuid.uuid4().hex[:8]}"
    alert_log = AlertLog(redis, prefix=prefix)
    async with serve(make_app(alert_log)) as base, httpx.AsyncClient(base_url=base, headers=AUTH) as api:
        yield LogApi(alert_log, api, base)
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)


async def seed(alert_log: AlertLog) -> dict[str, AlertEventV1]:
    """Eight alerts on two streams, one minute apart (a1 oldest … a8 newest)."""
    plan = [
        ("s-a", "af_episode", "warning", "raised"),
        ("s-a", "pause", "warning", "resolved"),
        ("s-b", "vt_run", "critical", "raised"),
        ("s-b", "lead_off", "info", "resolved"),
        ("s-a", "tachycardia", "critical", "resolved"),
        ("s-b", "data_gap", "info", "resolved"),
        ("s-a", "no_data", "warning", "raised"),
        ("s-b", "esr_high", "warning", "raised"),
    ]
    out = {}
    for i, (stream, kind, severity, state) in enumerate(plan, start=1):
        started = T0 + timedelta(minutes=i)
        assert await alert_log.record(event(stream, i, 0, kind=kind, severity=severity, started=started))
        ev = event(stream, i, 0, kind=kind, severity=severity, started=started)
        if state == "resolved":
            ev = event(stream, i, 1, state="resolved", kind=kind, severity=severity, started=started)
            assert await alert_log.record(ev)
        out[f"a{i}"] = ev
    return out


def numbers(page: dict[str, Any]) -> list[int]:
    return [int(a["alert_id"].rsplit(":", 1)[1]) for a in page["items"]]


async def test_list_filters_newest_first(log_api: LogApi) -> None:
    await seed(log_api.log)
    api = log_api.api

    async def ids(**params: Any) -> list[int]:
        r = await api.get("/v1/alerts", params=params)
        assert r.status_code == 200, r.text
        return numbers(r.json())

    assert await ids() == [8, 7, 6, 5, 4, 3, 2, 1]
    assert await ids(stream_id="s-a") == [7, 5, 2, 1]
    assert await ids(kind=["vt_run", "pause"]) == [3, 2]
    assert await ids(severity="warning") == [8, 7, 5, 3, 2, 1]
    assert await ids(severity="critical") == [5, 3]
    assert await ids(state="open") == [8, 7, 3, 1]
    assert await ids(state="resolved") == [6, 5, 4, 2]
    assert await ids(state="open", stream_id="s-b") == [8, 3]
    assert await ids(technical="true") == [7, 6, 4]
    assert await ids(technical="false") == [8, 5, 3, 2, 1]
    t = lambda m: (T0 + timedelta(minutes=m)).isoformat()  # noqa: E731
    assert await ids(since=t(3), until=t(6)) == [6, 5, 4, 3]
    assert await ids(since=t(7)) == [8, 7]
    assert await ids(until="2025-03-01T12:02:00") == [2, 1]  # naive = UTC
    assert await ids(stream_id="s-a", since=t(2), until=t(5), state="resolved") == [5, 2]

    r = await api.post("/v1/alerts/s-b:vt_run:3/ack", json={"by": "dr.who"})
    assert r.status_code == 200
    r = await api.post("/v1/alerts/s-a:pause:2/ack", json={"by": "dr.who", "note": "resolved, reviewed"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"  # a resolved alert can be acked
    assert await ids(acked="true") == [3, 2]
    assert await ids(acked="false") == [8, 7, 6, 5, 4, 1]
    assert await ids(acked="false", state="open", severity="warning") == [8, 7, 1]


async def test_paging_with_cursor(log_api: LogApi) -> None:
    await seed(log_api.log)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await log_api.api.get("/v1/alerts", params=params)).json()
        seen += numbers(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [8, 7, 6, 5, 4, 3, 2, 1] and pages == 3
    # paging with a filter; the last page says there is nothing more
    page = (await log_api.api.get("/v1/alerts", params={"limit": 2, "state": "open"})).json()
    assert numbers(page) == [8, 7] and page["next_cursor"]
    page = (await log_api.api.get("/v1/alerts", params={"limit": 2, "state": "open",
                                                        "cursor": page["next_cursor"]})).json()
    assert numbers(page) == [3, 1] and page["next_cursor"] is None
    # an exact page ends without a cursor
    assert (await log_api.api.get("/v1/alerts", params={"limit": 8})).json()["next_cursor"] is None


async def test_bounded_scan_returns_a_cursor_to_continue(redis: Redis) -> None:
    prefix = f"test:alertlog:{uuid.uuid4().hex[:8]}"
    alert_log = AlertLog(redis, prefix=prefix, scan_max=100)
    try:
        for i in range(250):
            kind = "vt_run" if i == 0 else "pause"  # the only match is the oldest
            await alert_log.record(event("s-scan", i, kind=kind, started=T0 + timedelta(seconds=i)))
        flt = AlertFilter(kinds=frozenset({"vt_run"}))
        page = await alert_log.query(flt, limit=10)
        assert page.items == [] and page.next_cursor is not None
        found: list[str] = []
        while page.next_cursor is not None:
            page = await alert_log.query(flt, limit=10, cursor=page.next_cursor)
            found += [a.alert_id for a in page.items]
        assert found == ["s-scan:vt_run:0"]
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        await redis.delete(*keys)


async def test_ack_is_kept_once_and_across_updates(log_api: LogApi) -> None:
    log, api = log_api.log, log_api.api
    await log.record(event("s-ack", 1))
    aid = "s-ack:af_episode:1"
    first = await api.post(f"/v1/alerts/{aid}/ack", json={"by": "op-1@ward.3", "note": "first"})
    assert first.status_code == 200
    again = await api.post(f"/v1/alerts/{aid}/ack", json={"by": "op-2"})
    assert again.status_code == 200 and again.json()["ack"] == first.json()["ack"]
    await log.record(event("s-ack", 1, 1, state="updated", severity="critical"))
    await log.record(event("s-ack", 1, 2, state="resolved", severity="critical"))
    got = (await api.get(f"/v1/alerts/{aid}")).json()
    assert got["seq"] == 2 and got["ack"] == first.json()["ack"] and got["ack"]["note"] == "first"
    assert not await log.record(event("s-ack", 1, 1, state="updated"))  # redelivered: ignored


async def test_streams_overview(log_api: LogApi) -> None:
    await seed(log_api.log)
    r = await log_api.api.get("/v1/streams")
    assert r.status_code == 200
    by_id = {s["stream_id"]: s for s in r.json()}
    assert [s["stream_id"] for s in r.json()] == ["s-b", "s-a"]  # most recent alert first
    assert by_id["s-b"]["last_alert_id"] == "s-b:esr_high:8" and by_id["s-b"]["open_alerts"] == 2
    assert by_id["s-a"]["last_kind"] == "no_data" and by_id["s-a"]["open_alerts"] == 2
    assert by_id["s-a"]["last_alert_at"].startswith("2025-03-01T12:07:00")
    assert len((await log_api.api.get("/v1/streams", params={"limit": 1})).json()) == 1


async def test_auth_404_and_422_never_echo(log_api: LogApi, redis: Redis) -> None:
    api = log_api.api
    await log_api.log.record(event("s-x", 1))
    for method, path in [("GET", "/v1/alerts"), ("GET", "/v1/alerts/s-x:af_episode:1"),
                         ("POST", "/v1/alerts/s-x:af_episode:1/ack"), ("GET", "/v1/streams")]:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = await api.request(method, path, headers=headers, json={"by": "x"})
            assert r.status_code == 401, (method, path, headers)
    async with serve(make_app(log_api.log, token=None)) as base, httpx.AsyncClient(base_url=base) as c:
        assert (await c.get("/v1/alerts", headers=AUTH)).status_code == 503

    assert (await api.get("/v1/alerts/s-x:nope:1")).status_code == 404
    assert (await api.post("/v1/alerts/s-x:nope:1/ack", json={"by": "op"})).status_code == 404
    assert not await redis.exists(f"{log_api.log._p}:ack:s-x:nope:1")  # no orphan ack

    secret = "SECRET-VALUE-42"
    bad_queries: list[dict[str, Any]] = [
        {"limit": 0}, {"limit": 501}, {"limit": secret}, {"state": secret}, {"kind": secret}, {"severity": secret},
        {"acked": secret}, {"since": secret}, {"cursor": secret}, {"stream_id": secret + " !"},
    ]
    for params in bad_queries:
        r = await api.get("/v1/alerts", params=params)
        assert r.status_code == 422, params
        assert secret not in r.text and "input" not in r.json()["detail"][0], r.text
    bad_bodies: list[Any] = [{}, {"by": ""}, {"by": secret + " x"}, {"by": "a" * 65},
                             {"by": "op", "note": secret * 20}, {"by": "op", "note": "a\x00" + secret},
                             {"by": "op", "extra": secret}, [secret], secret]
    for body in bad_bodies:
        r = await api.post("/v1/alerts/s-x:af_episode:1/ack", json=body)
        assert r.status_code == 422, body
        assert secret not in r.text, r.text
    r = await api.post("/v1/alerts/s-x:af_episode:1/ack", content=b"{not json " + secret.encode(),
                       headers={"content-type": "application/json"})
    assert r.status_code == 422 and secret not in r.text
    assert (await api.get("/v1/alerts/bad id!")).status_code == 422
    assert (await api.get("/v1/alerts/s-x:af_episode:1")).json()["ack"] is None


async def test_retention_trims_the_oldest_resolved_first(redis: Redis) -> None:
    prefix = f"test:alertlog:{uuid.uuid4().hex[:8]}"
    alert_log = AlertLog(redis, prefix=prefix, max_alerts=10)
    try:
        for i in range(12):  # 0..5 resolved, 6..11 open, oldest first
            started = T0 + timedelta(minutes=i)
            await alert_log.record(event("s-r", i, started=started))
            if i < 6:
                await alert_log.record(event("s-r", i, 1, state="resolved", started=started))
        page = await alert_log.query(AlertFilter(), limit=100)
        assert [int(a.alert_id.rsplit(":", 1)[1]) for a in page.items] == list(range(11, 1, -1))
        assert await alert_log.get("s-r:af_episode:0") is None
        # all open now beyond the bound: the oldest open ones go
        for i in range(12, 22):
            await alert_log.record(event("s-r", i, started=T0 + timedelta(minutes=i)))
        page = await alert_log.query(AlertFilter(), limit=100)
        assert [int(a.alert_id.rsplit(":", 1)[1]) for a in page.items] == list(range(21, 11, -1))
        assert (await alert_log.streams())[0].open_alerts == 10
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        await redis.delete(*keys)


async def test_ttl_expires_records_and_listing_drops_their_index_members(redis: Redis) -> None:
    prefix = f"test:alertlog:{uuid.uuid4().hex[:8]}"
    alert_log = AlertLog(redis, prefix=prefix, ttl_s=1)
    try:
        await alert_log.record(event("s-t", 1))
        assert await alert_log.ack("s-t:af_episode:1", "op") is not None
        assert 0 < await redis.ttl(f"{prefix}:ack:s-t:af_episode:1") <= 1
        await asyncio.sleep(1.3)
        assert await alert_log.get("s-t:af_episode:1") is None
        assert (await alert_log.query(AlertFilter(), limit=10)).items == []
        assert await redis.zcard(f"{prefix}:all") == 0 and await redis.zcard(f"{prefix}:open") == 0
        assert await alert_log.streams() == []
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
