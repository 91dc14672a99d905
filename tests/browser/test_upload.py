"""Upload & predict in real Chromium: MITDB record 100 (first 3 minutes) through the whole pipeline to the
waveform with the beats marked and labelled, the labels downloaded; and bad uploads, each a message on
the page, never a 500."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser.harness import chromium, login, running_console, screenshot
from tests.browser.uploads import cut_record, upload_and_wait
from tests.conftest import StackInfo

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SECONDS = 180.0


async def test_upload_mitdb_100_shows_labelled_beats(stack: StackInfo, mitdb: Path, tmp_path: Path) -> None:
    files, annotated = cut_record(mitdb, "100", SECONDS, tmp_path / "wfdb", with_atr=True)
    async with running_console(stack, pipeline=True) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        await login(page, console.base)
        await page.goto(f"{console.base}/upload")
        await page.set_input_files("input[name=files]", [str(f) for f in files])
        await screenshot(page, "upload")
        took = await upload_and_wait(page, console.base, files, progress_shot="recording_progress")
        print(f"upload → labelled waveform: {took:.1f} s for {SECONDS:.0f} s × 2 leads")
        assert "The .atr annotation file was ignored" in await page.inner_text("main")
        # beat marks on the overview (lead MLII): every R peak of the recording, within a few % of the reference
        marks = await page.evaluate("""() => {
            const d = window.StreamDxRecording.overview.data;
            let n = 0; for (let s = 2; s < d.length; s++) n += d[s].filter(v => v != null).length; return n; }""")
        print(f"beat marks on the overview: {marks}, annotated beats: {annotated}")
        assert abs(marks - annotated) <= 0.04 * annotated, (marks, annotated)
        # labels shown: the class counts and the beat table name classes
        counts = await page.inner_text(".counts")
        assert "N " in counts, counts
        table = await page.inner_text("#beats")
        assert "N" in table and "ok" in table
        # the detail chart at full resolution, beats marked, info on hover
        await page.wait_for_function("() => window.StreamDxRecording.detail.data[0].length > 3000")
        assert "every sample" in await page.inner_text("#resolution")
        detail_marks = await page.evaluate("""() => {
            const d = window.StreamDxRecording.detail.data;
            let n = 0; for (let s = 2; s < d.length; s++) n += d[s].filter(v => v != null).length; return n; }""")
        assert 8 <= detail_marks <= 20, detail_marks  # 10 s at ~75 bpm
        first_r = await page.evaluate("() => Number(document.querySelector('tr.beat-row').dataset.t)")
        box = await page.locator("#detail .u-over").bounding_box()
        x = box["x"] + box["width"] * (first_r - 0.0) / 10.0
        await page.mouse.move(x, box["y"] + box["height"] / 2)
        assert "Beat #" in await page.inner_text("#beatinfo")
        # zoom by dragging on the overview, then pan
        ob = await page.locator("#overview .u-over").bounding_box()
        await page.mouse.move(ob["x"] + ob["width"] * 0.5, ob["y"] + 30)
        await page.mouse.down()
        await page.mouse.move(ob["x"] + ob["width"] * 0.52, ob["y"] + 30, steps=5)
        await page.mouse.up()
        await page.wait_for_function("() => Math.abs(window.StreamDxRecording.window[0] - 90) < 3")
        await page.click("#pan-right")
        await page.wait_for_function("() => window.StreamDxRecording.window[0] > 91")
        # beat table paging
        await page.click("#beats >> text=next ›")
        await page.wait_for_function(
            "() => document.querySelector('#beats .pager span').textContent.includes('page 2')")
        await page.evaluate("window.scrollTo(0, 0)")
        await page.evaluate("window.StreamDxRecording.setWindow(0, 10)")
        await page.wait_for_timeout(400)
        await screenshot(page, "recording")
        # labels as CSV (both leads) and JSON
        async with page.expect_download() as info:
            await page.click(".downloads >> text=CSV")
        download = await info.value
        text = await asyncio.to_thread(Path(await download.path()).read_text)
        rows = list(csv.DictReader(io.StringIO(text)))
        mlii = [r for r in rows if r["lead"] == "MLII"]
        assert abs(len(mlii) - annotated) <= 0.04 * annotated
        assert {r["lead"] for r in rows} == {"MLII", "V5"}
        assert {r["beat_class"] for r in mlii if r["quality"] == "ok"} >= {"N"}
        assert all(0.0 <= float(r["af_prob"]) <= 1.0 for r in mlii if r["af_prob"])
        url = page.url.split("?")[0]
        data: dict[str, Any] = await page.evaluate(f"fetch('{url}/labels.json').then(r => r.json())")
        assert len(data["labels"]) == len(rows) and data["leads"] == ["MLII", "V5"]
        t = np.array([float(r["t_s"]) for r in mlii])
        assert t.min() >= 0 and t.max() <= SECONDS


def _kaggle_csv(rows: int = 3) -> bytes:
    """Single beats in the Kaggle layout with one value outside [0, 1] in row 2 (classified when valid:
    see test_kaggle_upload.py)."""
    rng = np.random.default_rng(0)
    lines = [",".join(f"{v:.6e}" for v in [*rng.random(187), 0.0]) for _ in range(rows)]
    lines[1] = lines[1].replace(lines[1].split(",")[4], "1.7", 1)
    return ("\n".join(lines) + "\n").encode()


async def test_bad_uploads_get_a_message(stack: StackInfo, mitdb: Path, tmp_path: Path) -> None:
    files, _ = cut_record(mitdb, "100", 20.0, tmp_path / "wfdb")
    truncated = tmp_path / "trunc"
    truncated.mkdir()
    (truncated / "100.hea").write_bytes(files[0].read_bytes())
    (truncated / "100.dat").write_bytes(files[1].read_bytes()[:-3000])
    txt = tmp_path / "notes.txt"
    txt.write_text("not a recording\n")
    non_ecg = tmp_path / "thermometer.csv"
    non_ecg.write_text("time,temperature\n" + "".join(f"{i},{21 + 0.1 * i:.1f}\n" for i in range(60)))
    kaggle = tmp_path / "mitbih_test.csv"
    kaggle.write_bytes(_kaggle_csv())
    huge = tmp_path / "huge.csv"
    huge.write_text("time,ECG\n" + "".join(f"{i / 250:.4f},{np.sin(i / 40):.3f}\n" for i in range(20_000)))
    ok_csv = tmp_path / "small.csv"
    ok_csv.write_text("time,ECG\n" + "".join(f"{i / 250:.4f},{np.sin(i / 40):.3f}\n" for i in range(2_500)))
    cases: list[tuple[list[Path], int, str]] = [
        ([txt], 415, ".txt is not a recording format the console accepts"),
        ([truncated / "100.hea", truncated / "100.dat"], 422, "the .dat file is truncated"),
        ([non_ecg], 422, "the time column gives 1 Hz, outside the supported 125–1000 Hz"),
        ([kaggle], 422, "1 row is not a Kaggle-layout beat: row 2. Row 2: value 5 is 1.7, outside [0, 1]"),
        ([huge], 413, "the console accepts at most 64.0 KiB per upload (413 Payload Too Large)"),
        ([files[0]], 422, "upload either a WFDB .hea and .dat pair"),
        ([ok_csv], 503, "The ingest service (http://127.0.0.1:9) is unreachable"),  # no pipeline here
    ]
    t0 = time.monotonic()
    async with running_console(stack, web_max_upload_bytes=64 * 1024) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await login(page, console.base)
        for chosen, status, message in cases:
            await page.goto(f"{console.base}/upload")
            await page.set_input_files("input[name=files]", [str(f) for f in chosen])
            async with page.expect_response(lambda r: r.url.endswith("/upload") and r.request.method == "POST") as resp:
                await page.click("form.upload button[type=submit]")
            response = await resp.value
            await page.wait_for_load_state()
            text = await page.inner_text(".upload-error")
            assert response.status == status, (chosen, response.status, text)
            assert message in text, (chosen, text)
            if chosen == [kaggle]:
                await screenshot(page, "upload_error")
    print(f"{len(cases)} bad uploads in {time.monotonic() - t0:.1f} s")
