"""Alerts page in real Chromium: an alarm raised by the real pipeline appears without a reload,
is acknowledged by the operator, links to the strip around it; filters; the alerts service
unreachable gives a clear message, never a 500.

The simulator's ``asystole`` scenario is published as 1-s ``EcgSamplesV1`` chunks at full speed
(as tests/integration/test_alert_scenarios.py does) → dsp → inference → alerts → alert log.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client import CollectorRegistry

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import PublisherMetrics
from tests.browser.harness import OPERATOR, chromium, login, running_console, screenshot
from tests.browser.test_live import login_client
from tests.conftest import StackInfo
from tests.integration.test_alert_scenarios import chunks

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def test_alarm_appears_and_is_acknowledged(stack: StackInfo) -> None:
    stream = f"bed-asys-{uuid.uuid4().hex[:6]}"
    async with running_console(stack, pipeline=True) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await login(page, console.base)
        await page.goto(f"{console.base}/alerts")
        assert await page.inner_text("h1") == "Alerts"
        pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()))
        await pub.start()
        try:
            t0 = time.monotonic()
            await pub.publish_many(chunks(stream, "asystole", 2, seconds=40.0))
            await pub.publish_many(chunks(f"bed-leadoff-{stream[-6:]}", "leadoff", 3, seconds=40.0))
        finally:
            await pub.stop()
        # the page refreshes itself: the alarm's row appears without a reload
        row = page.locator("table.alerts tr", has_text=stream).filter(has_text="asystole")
        await row.first.wait_for(timeout=90_000)
        print(f"\nasystole row on /alerts {time.monotonic() - t0:.1f} s after publishing 40 s of signal")
        assert "critical" in (await row.first.locator(".badge").get_attribute("class") or "")
        await row.first.locator("button.ack").click()
        await row.first.locator(".ack-by").wait_for(timeout=10_000)
        assert f"✓ {OPERATOR}" in await row.first.inner_text()
        # the next refresh keeps it acknowledged (it is in the alert log, not just in the page)
        await page.wait_for_timeout(3500)
        assert f"✓ {OPERATOR}" in await row.first.inner_text()
        await page.locator("table.alerts tr", has_text="lead off").first.wait_for(timeout=30_000)
        await screenshot(page, "alerts")

        # filters: not acknowledged hides it, acknowledged shows it
        await page.select_option("select[name=acked]", "no")
        await page.wait_for_timeout(1500)
        assert await page.locator("table.alerts tr", has_text=stream).filter(has_text="asystole").count() == 0
        await page.select_option("select[name=acked]", "yes")
        await page.fill("#f-stream", stream)
        await row.first.wait_for(timeout=5_000)

        # the strip around the alarm (the 40 s of signal are still in the console's memory)
        await row.first.locator("a", has_text="strip").click()
        await page.wait_for_url(f"{console.base}/streams/{stream}?at=*")
        assert "frozen" in await page.inner_text(".strip-head")
        await page.wait_for_function("window.__updates >= 1")
        await screenshot(page, "stream_at_alarm")

        # acknowledging through the console needs the CSRF token
        cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
        async with httpx.AsyncClient(base_url=console.base, cookies=cookies) as c:
            r = await c.post("/alerts/x:y:1/ack")
            assert r.status_code == 403


async def test_alerts_service_unreachable_is_a_message_not_a_500(stack: StackInfo) -> None:
    async with running_console(stack, web_cookie_secure=False) as console, \
            httpx.AsyncClient(base_url=console.base, timeout=10) as c:  # fmt: skip
        await login_client(c)
        r = await c.get("/alerts")
        assert r.status_code == 200
        assert "Alerts unavailable" in r.text and "unreachable" in r.text
        r = await c.get("/alerts/table", params={"state": "bogus", "kind": "nope", "stream_id": "bad id"})
        assert r.status_code == 200
        assert "State must be" in r.text and "Unknown alarm kind" in r.text and "stream id" in r.text
        token = (await c.get("/alerts")).text.split('name="csrf-token" content="')[1].split('"')[0]
        r = await c.post("/alerts/some:alert:0/ack", headers={"X-CSRF-Token": token, "HX-Request": "true"})
        assert r.status_code == 200 and "unreachable" in r.text and "not acknowledged" in r.text
