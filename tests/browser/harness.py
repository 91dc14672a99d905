"""Browser-test harness: the console (and optionally the whole pipeline) in the test loop, a real
headless Chromium driven by Playwright, log-in and screenshots.

Chromium is Debian's (``apt-get install chromium``), found on PATH or via ``CHROMIUM``. Without
it the browser tests are skipped locally with how to install it; with ``CI=true`` they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from redis.asyncio import Redis

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import AlertsMetrics, DspMetrics, InferenceMetrics
from streamdx.worker_service import WorkerRuntime, health_app
from streamdx_web.app import create_app
from streamdx_web.settings import WebSettings
from streamdx_web.users import UserStore
from tests.conftest import StackInfo
from tests.integration.servers import running_workers, serve

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
OPERATOR = "operator"
PASSWORD = "correct horse battery"
ADMIN = "browser-admin-token"


def chromium_path() -> str:
    """The system Chromium, or skip (locally) / fail (CI) with how to install it."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    msg = "Chromium not found: install Debian's chromium (`sudo apt-get install chromium`) or set CHROMIUM=/path"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " (CI runs the browser tests; .ci/run installs it)")
    pytest.skip(msg)


@dataclass
class Console:
    """A running console: its base URL and what it runs on."""

    base: str
    settings: WebSettings
    ingest: str | None = None
    alerts: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def running_console(stack: StackInfo, *, pipeline: bool = False, **overrides: Any) -> AsyncIterator[Console]:
    """The web console on a free loopback port with an operator account; with ``pipeline`` also
    ingest, dsp, inference and alerts (own consumer groups), all in the test loop."""
    tag = uuid.uuid4().hex[:6]
    common: dict[str, Any] = {"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url}
    async with contextlib.AsyncExitStack() as es:
        ingest_url = alerts_url = None
        if pipeline:
            ingest_url, alerts_url = await es.enter_async_context(_pipeline(stack, tag))
        settings = WebSettings(**common, ingest_url=ingest_url or "http://127.0.0.1:9",
                               alerts_url=alerts_url or "http://127.0.0.1:9",
                               ingest_admin_token=SecretStr(ADMIN), alerts_admin_token=SecretStr(ADMIN),
                               web_session_secret=SecretStr("s" * 40), web_runs_dir=str(ROOT / "reports" / "web-runs"),
                               **overrides)
        redis = Redis.from_url(stack.redis_url)
        await UserStore(redis).set_password(OPERATOR, PASSWORD)
        await redis.aclose()
        base = await es.enter_async_context(serve(create_app(settings)))
        await asyncio.sleep(1.0)  # the live followers join their partitions
        yield Console(base, settings, ingest_url, alerts_url)


@contextlib.asynccontextmanager
async def _pipeline(stack: StackInfo, tag: str) -> AsyncIterator[tuple[str, str]]:
    from streamdx_alerts.main import build_alerts_service
    from streamdx_alerts.rules import Profiles
    from streamdx_alerts.settings import AlertsSettings
    from streamdx_dsp.main import build_dsp_workers, dsp_warm_up
    from streamdx_dsp.settings import DspSettings
    from streamdx_inference.main import build_inference_workers
    from streamdx_inference.settings import InferenceSettings
    from streamdx_ingest.app import create_app as create_ingest
    from tests.integration.test_ingest import settings_for

    common: dict[str, Any] = {"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url,
                              "batch_timeout_ms": 50}
    dsp = DspSettings(**common, dsp_group=f"dsp-b-{tag}", dsp_esr_group=f"dsp-esr-b-{tag}")
    inf = InferenceSettings(**common, inference_ecg_group=f"inf-b-{tag}", inference_esr_group=f"inf-esr-b-{tag}")
    alerts = AlertsSettings(**common, alerts_rhythm_group=f"al-r-b-{tag}", alerts_status_group=f"al-s-b-{tag}",
                            alerts_esr_group=f"al-e-b-{tag}", alerts_delivery_group=f"al-w-b-{tag}",
                            alerts_admin_token=SecretStr(ADMIN), **_log_group(tag))
    ingest_settings = settings_for(stack).model_copy(update={"ingest_admin_token": SecretStr(ADMIN)})
    await dsp_warm_up()
    metrics = AlertsMetrics(CollectorRegistry())
    redis = Redis.from_url(stack.redis_url)
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    stop = asyncio.Event()
    parts = build_alerts_service(WorkerRuntime(alerts, metrics, redis, pub, stop), alerts, Profiles())
    tasks = [asyncio.create_task(w.run(stop)) for w in parts.workers]
    tasks += [asyncio.create_task(job(stop)) for job in parts.background]
    try:
        async with running_workers(stack, DspMetrics(CollectorRegistry()), lambda rt: build_dsp_workers(rt, dsp)), \
                running_workers(stack, InferenceMetrics(CollectorRegistry()),
                                lambda rt: build_inference_workers(rt, inf)), \
                serve(create_ingest(ingest_settings)) as ingest_base, \
                serve(health_app(parts.workers, tasks, metrics.registry, parts.routers,  # type: ignore[arg-type]
                                 parts.app_state)) as alerts_base:  # fmt: skip
            yield ingest_base, alerts_base
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pub.stop()
        await redis.aclose()


def _log_group(tag: str) -> dict[str, str]:
    from streamdx_alerts.settings import AlertsSettings

    return {"alerts_log_group": f"al-l-b-{tag}"} if "alerts_log_group" in AlertsSettings.model_fields else {}


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium browser (Playwright driving the system executable)."""
    from playwright.async_api import async_playwright

    path = chromium_path()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True,
                                           args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            await browser.close()


async def login(page: Any, base: str, user: str = OPERATOR, password: str = PASSWORD) -> None:
    """Log in through the form (the page ends on the stream list)."""
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/streams")


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG under docs/screenshots/ (committed, linked from the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
