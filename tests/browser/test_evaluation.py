"""Evaluation journey in real Chromium: start ``eval beats --protocol ds1ds2`` and ``eval rpeaks`` on
MITDB from the page, watch the progress bar, read the metrics table and the confusion matrix
(checked against the JSON report the command wrote), find the runs in the past-runs list, also
after a console restart; a dataset that is not offered is refused on the page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streamdx_web.eval_jobs import valid_run_id
from tests.browser.harness import chromium, login, running_console, screenshot
from tests.conftest import StackInfo

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def _start(page: Any, base: str, protocol: str, records: str = "") -> str:
    await page.goto(f"{base}/evaluation")
    await page.select_option("select[name=dataset]", "mitdb")
    await page.check(f"input[name=protocol][value={protocol}]")
    await page.fill("input[name=records]", records)
    await page.click("button:has-text('Start evaluation')")
    await page.wait_for_url(f"{base}/evaluation/runs/*")
    run_id = page.url.rsplit("/", 1)[-1]
    assert valid_run_id(run_id)
    return run_id


async def _watch(page: Any, timeout_s: float = 60.0, shot: str | None = None) -> list[str]:
    """Progress values (aria-valuenow, or "indeterminate") seen until the run leaves running/queued
    (``shot``: screenshot the first determinate bar)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await page.get_attribute("#run-panel", "data-status")
        if status not in ("queued", "running"):
            return seen
        bar = await page.query_selector("#run-panel .progress")
        if bar is not None:
            v = await bar.get_attribute("aria-valuenow")
            if not seen or seen[-1] != (v or "indeterminate"):
                seen.append(v or "indeterminate")
                if shot and v and 0 < int(v) < 100:
                    await screenshot(page, shot)
                    shot = None
        await page.wait_for_timeout(100)
    raise AssertionError(f"the run did not finish in {timeout_s:.0f} s (progress seen: {seen})")


def _report(runs_dir: str, run_id: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((Path(runs_dir) / run_id / "report.json").read_text())
    return report


async def _cell(page: Any, ref: str, col: str) -> int:
    text = await page.get_attribute(f"#confusion tr[data-ref='{ref}'] td[data-col='{col}']", "data-count")
    assert text is not None
    return int(text)


async def _metric(page: Any, table: str, row: str, header: str) -> str:
    loc = page.locator(f"table[data-table='{table}'] tr:has(th:text-is('{row}')) td[data-h='{header}']")
    return (await loc.inner_text()).strip()


async def test_run_an_evaluation_and_see_its_confusion_matrix(stack: StackInfo, mitdb: Path) -> None:
    started = time.monotonic()
    async with running_console(stack, web_data_root=str(mitdb.parent)) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await login(page, console.base)
        runs_dir = console.settings.web_runs_dir

        # a dataset the page does not offer (a path) and a protocol/dataset mismatch are refused on the page
        await page.goto(f"{console.base}/evaluation")
        await page.evaluate("""() => { const s = document.querySelector('select[name=dataset]');
            s.add(new Option('etc', '../../etc')); s.value = '../../etc'; }""")
        await page.click("button:has-text('Start evaluation')")
        assert "Unknown dataset" in await page.inner_text("#eval-error")
        await page.select_option("select[name=dataset]", "mitdb")
        await page.check("input[name=protocol][value=cinc2017]")
        await page.click("button:has-text('Start evaluation')")
        assert "needs a CinC 2017 pack" in await page.inner_text("#eval-error")

        # R peaks on a few records: the progress bar advances record by record
        rp_id = await _start(page, console.base, "rpeaks", "100,101,103,105,106,112")
        progress = await _watch(page, shot="evaluation-progress")
        assert progress, "no progress bar was shown while the run was active"
        assert await page.get_attribute("#run-panel", "data-status") == "done", await page.inner_text("#run-panel")
        rp = _report(runs_dir, rp_id)
        assert await _cell(page, "beat", "detected") == rp["gross"]["tp"]
        assert await _cell(page, "beat", "not detected") == rp["gross"]["fn"]
        assert await _cell(page, "no beat", "detected") == rp["gross"]["fp"]
        assert await _metric(page, "Per record", "103", "Se %") == f"{rp['records']['103']['se']:.2f}"
        assert await _metric(page, "Per record", "105", "F1 %") == f"{rp['records']['105']['f1']:.2f}"

        # DS1/DS2 beat classes: the multi-class confusion matrix and the per-class table
        beats_id = await _start(page, console.base, "beats")
        await _watch(page)
        assert await page.get_attribute("#run-panel", "data-status") == "done", await page.inner_text("#run-panel")
        rep = _report(runs_dir, beats_id)
        rows, cols = rep["confusion_rows"], rep["confusion_cols"]
        for i, ref in enumerate(rows):
            for j, col in enumerate(cols):
                assert await _cell(page, ref, col) == rep["confusion"][i][j], (ref, col)
        assert await _cell(page, "V", "missed") == rep["missed_by_detector"]["V"]
        for c in ("N", "V"):
            assert await _metric(page, "Per class (AAMI)", c, "Se % (recall)") == f"{rep['classes'][c]['se']:.2f}"
            assert await _metric(page, "Per class (AAMI)", c, "+P % (precision)") == f"{rep['classes'][c]['ppv']:.2f}"
        b = rep["binary"]
        for header, key in (("accuracy", "accuracy"), ("precision (+P)", "precision"), ("recall (Se)", "recall"),
                            ("F1", "f1")):
            assert await _metric(page, "N vs abnormal (S, V, F, Q)", "beats", header) == f"{b[key]:.3f}"
        # the diagonal is shaded by its share of the row
        style = await page.get_attribute("#confusion tr[data-ref='N'] td[data-col='N']", "style")
        assert style and "rgba(29,111,209" in style.replace(" ", "")
        await screenshot(page, "evaluation")

        # both runs in the past-runs list, with their headline figure
        await page.goto(f"{console.base}/evaluation")
        beats_row = page.locator(f"tr[data-run='{beats_id}']")
        assert "DS1/DS2 beats" in await beats_row.inner_text()
        assert f"{b['f1']:.3f}" in await beats_row.inner_text()
        assert "done" in await beats_row.inner_text()
        assert f"{rp['gross']['f1']:.2f} %" in await page.locator(f"tr[data-run='{rp_id}']").inner_text()
        await screenshot(page, "evaluation-runs")

    # the runs survive a console restart
    async with running_console(stack, web_data_root=str(mitdb.parent)) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await login(page, console.base)
        await page.goto(f"{console.base}/evaluation")
        assert "done" in await page.locator(f"tr[data-run='{beats_id}']").inner_text()
        await page.click(f"tr[data-run='{beats_id}'] a")
        assert await _cell(page, "N", "N") == rep["confusion"][0][0]
    assert time.monotonic() - started < 90
