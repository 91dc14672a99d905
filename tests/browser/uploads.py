"""Helpers of the upload and report browser tests: a cut of a MITDB record as a WFDB pair, and the
upload journey up to the waveform."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from streamdx_devkit.sim.ecg import AAMI_CLASSES


def cut_record(mitdb: Path, name: str, seconds: float, out: Path, *, with_atr: bool = False) -> tuple[list[Path], int]:
    """The first ``seconds`` of MITDB record ``name`` written as ``out/name.hea`` + ``.dat`` (format 212,
    the ADC values unchanged) and optionally its ``.atr``; returns the files and the number of annotated
    beats in the cut."""
    fs = wfdb.rdheader(str(mitdb / name)).fs
    sampto = round(seconds * fs)
    rec = wfdb.rdrecord(str(mitdb / name), sampto=sampto, physical=False)
    out.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, d_signal=rec.d_signal, fmt=rec.fmt,
                adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(out))
    ann = wfdb.rdann(str(mitdb / name), "atr", sampto=sampto)
    beats = int(np.sum([s in AAMI_CLASSES for s in ann.symbol]))
    files = [out / f"{name}.hea", out / f"{name}.dat"]
    if with_atr:
        wfdb.wrann(name, "atr", np.asarray(ann.sample), list(ann.symbol), write_dir=str(out))
        files.append(out / f"{name}.atr")
    return files, beats


async def upload_and_wait(page: Any, base: str, files: list[Path], timeout_s: float = 75.0,
                          progress_shot: str | None = None) -> float:
    """Upload ``files`` through the form and wait until the recording page shows the waveform;
    returns the seconds it took."""
    t0 = time.monotonic()
    await page.goto(f"{base}/upload")
    await page.set_input_files("input[name=files]", [str(f) for f in files])
    await page.click("form.upload button[type=submit]")
    await page.wait_for_url(lambda url: "/recordings/" in url, timeout=30_000)
    if progress_shot is not None and await page.locator("#status .progress").count():
        from tests.browser.harness import screenshot

        await screenshot(page, progress_shot)
    await page.wait_for_function(
        "() => window.StreamDxRecording && window.StreamDxRecording.overview.data[0].length > 0",
        timeout=timeout_s * 1000, polling=250)
    return time.monotonic() - t0
