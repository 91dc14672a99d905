"""Log-in journey in real Chromium: redirect to /login, wrong password, log in, CSRF, log out."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.harness import OPERATOR, PASSWORD, chromium, login, running_console, screenshot
from tests.conftest import StackInfo

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def test_log_in_and_out(stack: StackInfo) -> None:
    async with running_console(stack) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{console.base}/streams")
        assert page.url.startswith(f"{console.base}/login")
        await screenshot(page, "login")
        await page.fill("input[name=username]", OPERATOR)
        await page.fill("input[name=password]", "wrong password!")
        await page.click("button[type=submit]")
        assert "Wrong user name or password" in await page.inner_text(".error")
        await login(page, console.base)
        assert await page.inner_text("h1") == "Live streams"
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session = cookies["streamdx_session"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        await page.click("text=Log out")
        await page.wait_for_url(f"{console.base}/login")
        await page.goto(f"{console.base}/streams")
        assert page.url.startswith(f"{console.base}/login")


async def test_post_without_csrf_token_is_refused(stack: StackInfo) -> None:
    async with running_console(stack) as console, httpx.AsyncClient(base_url=console.base) as client:
        r = await client.post("/login", data={"username": OPERATOR, "password": PASSWORD})
        assert r.status_code == 403
        assert "CSRF" in r.text
