"""ESR journey in real Chromium: simulated tubes upload camera frames through the whole pipeline
(ingest → dsp boundary → inference GRU); the tube list shows them, and a tube page shows the
height curve, the latest 60-minute forecast with its interval and the *simulated* mark."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from streamdx.schemas import EsrForecastV1, EsrHeightV1
from streamdx_devkit.sim.device import create_device
from streamdx_devkit.sim.esr import esr_cohort_simulate
from streamdx_devkit.sim.esr_device import stream_tube
from tests.browser.harness import ADMIN, chromium, login, running_console, screenshot
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages

pytestmark = [pytest.mark.browser, pytest.mark.integration]

MINUTES = 15  # frames of minutes 0..15: forecasts issued at minutes 10..15


async def test_simulated_tubes_show_height_curve_and_forecast(stack: StackInfo) -> None:
    started = time.monotonic()
    async with running_console(stack, pipeline=True) as console, chromium() as browser:
        assert console.ingest is not None
        device = f"cam-{uuid.uuid4().hex[:6]}"
        tubes = esr_cohort_simulate(3, seed=11)
        ids = [f"{device}:{t.tube_id}" for t in tubes]
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            key = await create_device(client, console.ingest, ADMIN, device)
            reports = await asyncio.gather(*[stream_tube(client, console.ingest, tid, key, t, minutes=MINUTES)
                                             for tid, t in zip(ids, tubes, strict=True)])
        assert all(r.error is None and r.frames_sent == MINUTES + 1 for r in reports), reports

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await login(page, console.base)
        await page.goto(f"{console.base}/esr")
        # the list (polled every 3 s) fills in as the forecasts arrive
        for tid in ids:
            row = page.locator(f"tr[data-tube='{tid}']")
            await row.locator("text=min 15").wait_for(timeout=60_000)
            assert "simulated" in await row.inner_text()
        await screenshot(page, "esr-tubes")

        tid = ids[0]
        await page.click(f"tr[data-tube='{tid}'] a")
        await page.wait_for_url(f"{console.base}/esr/*")
        assert await page.inner_text("h1") == f"Tube {tid} simulated"
        assert await page.is_visible("#simulated")
        forecasts = await read_messages(stack.kafka_bootstrap, EsrForecastV1, tid)
        heights = await read_messages(stack.kafka_bootstrap, EsrHeightV1, tid)
        latest = max(forecasts, key=lambda f: f.minute)
        assert latest.minute == MINUTES and latest.simulated
        assert await page.inner_text("#forecast-h60 > small") == f"[{latest.h60_low:.3f}, {latest.h60_high:.3f}]"
        assert (await page.inner_text("#forecast-h60")).startswith(f"{latest.h60:.3f}")
        assert await page.inner_text("#forecast-minute") == str(MINUTES)
        assert await page.inner_text("#last-minute") == str(MINUTES)
        last_height = max(heights, key=lambda h: h.minute)
        assert await page.inner_text("#height-now") == f"{last_height.height:.3f}"
        # the chart: the height curve, the forecast point with its error bar and band, the SIMULATED mark
        chart = page.locator("#height-chart svg")
        for gid in ("heights", "forecast", "forecast-band"):
            assert await chart.locator(f"g#{gid}").count() == 1, gid
        assert "SIMULATED" in (await chart.text_content() or "")
        assert f"[{latest.h60_low:.3f}, {latest.h60_high:.3f}]" in (await chart.text_content() or "")
        box = await chart.bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] > 200
        assert await page.locator("#history-chart svg g#history").count() == 1
        assert await page.locator("#forecasts tbody tr").count() == len(forecasts)
        await screenshot(page, "esr")

        # an unknown tube is a clear message, not a 500
        r = await page.goto(f"{console.base}/esr/no-such-tube")
        assert r is not None and r.status == 404
        assert "no data of this tube" in await page.inner_text(".error")
    assert time.monotonic() - started < 90
