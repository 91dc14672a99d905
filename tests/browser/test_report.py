"""Holter report in real Chromium: the report of an uploaded MITDB record (summary from the alerts
service, HR trend, AF and ectopy sections, example strips) as a page and as a PDF; and the messages
when the alerts service has no summary or is down."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.browser.harness import SCREENSHOTS, chromium, login, running_console, screenshot
from tests.browser.uploads import cut_record, upload_and_wait
from tests.conftest import StackInfo

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _pdf_page_png(pdf: Path, out: Path) -> bool:
    """First page of ``pdf`` as PNG at 80 dpi with poppler's pdftoppm (when installed)."""
    exe = shutil.which("pdftoppm")
    if exe is None:
        return False
    subprocess.run([exe, "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(out.with_suffix(""))],
                   check=True, timeout=60)  # fmt: skip
    return out.exists()


async def test_holter_report_page_and_pdf(stack: StackInfo, mitdb: Path, tmp_path: Path) -> None:
    files, _ = cut_record(mitdb, "100", 180.0, tmp_path / "wfdb")
    async with running_console(stack, pipeline=True) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await login(page, console.base)
        await upload_and_wait(page, console.base, files)
        stream = await page.evaluate("document.getElementById('recording-data').dataset.stream")
        assert stream.endswith(":MLII")
        # the report list links the streams of the live cache
        await page.goto(f"{console.base}/reports")
        await screenshot(page, "reports")
        await page.click(f"table.reports >> text={stream}")
        await page.wait_for_url(f"{console.base}/reports/{stream}")
        deadline = time.monotonic() + 30
        while await page.locator("#hr").count() == 0:  # the rhythm worker's state lands a moment after the labels
            assert time.monotonic() < deadline, await page.inner_text("main")
            await asyncio.sleep(1.0)
            await page.reload()
        t0 = time.monotonic()
        await page.reload()
        html_s = time.monotonic() - t0
        main = await page.inner_text("main")
        for text in ("Heart rate", "HR mean", "Atrial fibrillation", "AF burden", "AF episodes", "S beats", "V beats",
                     "longest VT run", "pauses", "Example strips"):
            assert text in main, text
        assert "No AF episode." in main  # record 100 has no AF
        assert await page.locator("#hr img").count() == 1
        strips = await page.locator("#strips .strip").count()
        assert 1 <= strips <= 5, strips
        assert await page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        await screenshot(page, "report")
        # the PDF
        t0 = time.monotonic()
        r = await page.request.get(f"{console.base}/reports/{stream}.pdf")
        pdf_s = time.monotonic() - t0
        assert r.status == 200 and r.headers["content-type"] == "application/pdf"
        body = await r.body()
        assert body.startswith(b"%PDF")
        reader = PdfReader(io.BytesIO(body))
        text = " ".join(p.extract_text() or "" for p in reader.pages)
        for needle in ("Holter report", stream, "Heart rate", "HR mean", "Atrial fibrillation", "AF burden",
                       "Example strips"):
            assert needle in text, needle
        pdf = tmp_path / "report.pdf"
        await asyncio.to_thread(pdf.write_bytes, body)
        png = await asyncio.to_thread(_pdf_page_png, pdf, SCREENSHOTS / "report_pdf.png")
        # a stream the alerts service has no summary of
        resp = await page.goto(f"{console.base}/reports/never-seen-stream")
        assert resp is not None and resp.status == 404
        assert "has no summary of this stream" in await page.inner_text(".report-error")
        print(f"report page {html_s:.2f} s, PDF {pdf_s:.2f} s ({len(reader.pages)} pages, {len(body)} bytes), "
              f"first page PNG: {png}")


async def test_report_messages_without_summary(stack: StackInfo) -> None:
    async with running_console(stack) as console, chromium() as browser:  # alerts_url points at nothing
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await login(page, console.base)
        resp = await page.goto(f"{console.base}/reports/no-such-stream")
        assert resp is not None and resp.status == 503
        assert "alerts service (http://127.0.0.1:9) is unreachable" in await page.inner_text(".report-error")
        resp = await page.goto(f"{console.base}/reports/no-such-stream.pdf")
        assert resp is not None and resp.status == 503
        assert "unreachable" in await page.inner_text(".report-error")
        resp = await page.goto(f"{console.base}/reports")
        assert resp is not None and resp.status == 200

