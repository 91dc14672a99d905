"""Single-beat CSV (Kaggle layout) in real Chromium: a few hundred labelled MITDB beats rebuilt by
``streamdx_inference.ecg.kaggle`` are uploaded, classified by ``ecg_kaggle_beats`` and shown — classes,
the beat plot, accuracy / precision / recall / F1 and the confusion matrix, every figure compared with a
direct computation on the same beats; the downloads; and a file with a row of the wrong length refused
with the row number."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamdx_inference.ecg.kaggle import kaggle_beats
from streamdx_inference.ecg.kaggle_classifier import CLASSES, MODEL_NAME, KaggleBeatClassifier
from streamdx_inference.settings import default_models_dir
from tests.browser.harness import chromium, login, running_console, screenshot
from tests.conftest import StackInfo

pytestmark = [pytest.mark.browser, pytest.mark.integration]

#: Records with every AAMI class between them (N; V and F in 208; S in 209 and 232; Q (paced) in 217).
RECORDS = ("208", "209", "217")
PER_CLASS = 80


def _beats(mitdb: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = kaggle_beats(mitdb, RECORDS, peaks="annotations")
    rng = np.random.default_rng(7)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:PER_CLASS] for c in CLASSES]))
    return x[keep], np.array([CLASSES.index(c) for c in y[keep]])


def _csv(x: np.ndarray, y: np.ndarray | None) -> bytes:
    # the published files' number format: 18-digit exponent notation, the class as a float, no header
    rows = [",".join(f"{v:.18e}" for v in [*x[i], *([float(y[i])] if y is not None else [])]) for i in range(len(x))]
    return ("\n".join(rows) + "\n").encode()


async def _upload(page: Any, base: str, path: Path) -> Any:
    await page.goto(f"{base}/upload")
    await page.set_input_files("input[name=files]", [str(path)])
    async with page.expect_response(lambda r: r.url.endswith("/upload") and r.request.method == "POST") as resp:
        await page.click("form.upload button[type=submit]")
    response = await resp.value
    await page.wait_for_load_state()
    return response


async def _read(path: Any) -> str:
    return await asyncio.to_thread(Path(path).read_text)


def _f3(v: float) -> str:
    return "—" if np.isnan(v) else f"{v:.3f}"


async def test_kaggle_csv_is_classified_and_scored(stack: StackInfo, mitdb: Path, tmp_path: Path) -> None:
    models = Path(os.environ.get("MODELS_DIR") or default_models_dir())
    if not (models / MODEL_NAME / "model.onnx").exists():
        pytest.fail("models/ecg_kaggle_beats is missing: run `streamdx train kaggle-beats`")
    x, y = _beats(mitdb)
    n = len(y)
    assert 300 <= n <= 400 and set(y.tolist()) == set(range(5)), np.bincount(y)
    # the direct computation the page must match
    res = KaggleBeatClassifier.from_models_dir(models).classify(x)
    pred = res.class_index
    conf = np.array([[int(np.sum((y == i) & (pred == j))) for j in range(5)] for i in range(5)])
    good = tmp_path / "mitbih_beats.csv"
    good.write_bytes(_csv(x, y))
    bad = tmp_path / "broken.csv"
    lines = _csv(x[:40], y[:40]).decode().splitlines()
    lines[16] = ",".join(lines[16].split(",")[:150])  # row 17: 150 values
    bad.write_text("\n".join(lines) + "\n")

    async with running_console(stack, models_dir=models) as console, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        await login(page, console.base)
        t0 = time.monotonic()
        response = await _upload(page, console.base, good)
        took = time.monotonic() - t0
        assert response.status == 303, await page.inner_text("main")
        assert "/upload/kaggle/" in page.url
        print(f"{n} beats uploaded, classified and shown in {took:.2f} s")

        note = await page.inner_text("#model-note")
        assert "ecg_kaggle_beats" in note and "intra-patient on MITDB" in note and "new patient" in note
        # class counts: predicted and in the file
        for i, c in enumerate(CLASSES):
            row = page.locator(f"#class-counts tr[data-class={c}]")
            assert int((await row.locator("td[data-h=predicted]").inner_text()).replace(" ", "")) == int(
                np.sum(pred == i))
            assert int((await row.locator("td[data-h=reference]").inner_text()).replace(" ", "")) == int(
                np.sum(y == i))
        # the confusion matrix, cell by cell
        for i, ref in enumerate(CLASSES):
            for j, col in enumerate(CLASSES):
                cell = page.locator(f"#confusion tr[data-ref={ref}] td[data-col={col}]")
                assert int(await cell.get_attribute("data-count")) == conf[i, j], (ref, col)
        # accuracy, per-class precision / recall / F1 and their macro averages
        acc = float(np.mean(pred == y))
        assert (await page.inner_text("#headline")).startswith(f"{acc:.3f}")
        table = page.locator("table.metrics[data-table='Per class (AAMI)']")
        f1s = []
        for i, c in enumerate(CLASSES):
            tp = conf[i, i]
            p = tp / conf[:, i].sum() if conf[:, i].sum() else np.nan
            r = tp / conf[i].sum()
            f = 2 * tp / (conf[i].sum() + conf[:, i].sum())
            f1s.append(f)
            tr = table.locator("tbody tr").nth(i)
            assert await tr.locator("th").inner_text() == c
            assert await tr.locator("td[data-h='precision (+P)']").inner_text() == _f3(p)
            assert await tr.locator("td[data-h='recall (Se)']").inner_text() == _f3(r)
            assert await tr.locator("td[data-h=F1]").inner_text() == _f3(f)
        macro = table.locator("tbody tr").nth(5)
        assert await macro.locator("td[data-h=F1]").inner_text() == _f3(float(np.mean(f1s)))
        print("accuracy", round(acc, 4), "macro F1", round(float(np.mean(f1s)), 4), "confusion", conf.tolist())

        # the beat plot: the first misclassified row is shown; a click on a table row shows that beat
        await page.wait_for_function("() => document.getElementById('beat-chart').dataset.shown")
        assert await page.locator("#beat-chart canvas").count() >= 1
        shown = int(await page.get_attribute("#beat-chart", "data-shown"))
        assert pred[shown - 1] != y[shown - 1]
        await page.click("table.kaggle-rows tr.beat-row[data-row='3']")
        await page.wait_for_function("() => document.getElementById('beat-chart').dataset.shown === '3'")
        info = await page.inner_text("#beat-info")
        assert f"Row 3 of {n}: predicted {CLASSES[pred[2]]}" in info and f"in the file {CLASSES[y[2]]}" in info
        # each row's class and probabilities; pages of 25
        first = page.locator("table.kaggle-rows tbody tr").first
        cells = await first.locator("td").all_inner_texts()
        assert cells[0] == "1" and cells[1] == CLASSES[pred[0]]
        assert [float(v) for v in cells[2:7]] == pytest.approx(res.probs[0].tolist(), abs=6e-4)
        assert f"page 1 of {-(-n // 25)}" in await page.inner_text("#rows .pager")
        await screenshot(page, "kaggle_upload")
        await page.click("#rows .pager button:has-text('next')")
        await page.wait_for_function("() => document.querySelector('table.kaggle-rows td').textContent === '26'")
        # misclassified only
        await page.select_option(".row-filter select", "errors")
        n_err = int(np.sum(pred != y))
        await page.wait_for_function(
            f"() => document.querySelector('table.kaggle-rows').dataset.matching === '{n_err}'")
        assert await page.locator("table.kaggle-rows tr.wrong").count() == min(25, n_err)
        # downloads
        async with page.expect_download() as dl:
            await page.click("a:has-text('Download CSV')")
        got = list(csv.DictReader(io.StringIO(await _read(await (await dl.value).path()))))
        assert [r["class"] for r in got] == [CLASSES[k] for k in pred]
        assert [r["label_class"] for r in got] == [CLASSES[k] for k in y]
        async with page.expect_download() as dl:
            await page.click("a:has-text('Download JSON')")
        assert '"rows"' in await _read(await (await dl.value).path())

        # the upload page lists it; a broken file is refused with the row number
        await page.goto(f"{console.base}/upload")
        assert str(n) in await page.inner_text("#beat-files")
        response = await _upload(page, console.base, bad)
        text = await page.inner_text(".upload-error")
        assert response.status == 422, text
        assert "1 row has the wrong length: row 17 (row 17 has 150 values)" in text, text
        assert "187 values at 125 Hz" in text
        await screenshot(page, "kaggle_upload_error")
