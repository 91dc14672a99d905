"""Uploaded recordings in the console: Kaggle-layout detection, the upload's format dispatch, signal windows
of a retained 5-min 360-Hz stream (fast enough for the viewer), unreadable spans, label exports, charts."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from streamdx.encoding import encode_i16
from streamdx.schemas import EcgLabelV1, EcgSamplesV1
from streamdx_ingest.recordings import RecordingError
from streamdx_web.charts import hr_trend_svg, strip_svg
from streamdx_web.live import LabelPoint, LiveCache
from streamdx_web.recordings import (
    LABEL_FIELDS,
    label_records,
    labels_csv,
    signal_window,
    stream_origin,
    unreadable_spans,
)
from streamdx_web.routes.upload import _parse, kaggle_layout

FS = 360.0
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _retained(seconds: float = 300.0, stream: str = "web-x:MLII") -> LiveCache:
    live = LiveCache(window_s=30)
    live.retain(stream)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    x = (np.where((t % 0.8) < 0.02, 1.2, 0.0) + 0.05 * np.sin(2 * np.pi * t)) * 200
    for k, start in enumerate(range(0, n, 360)):
        adc = x[start : start + 360].astype(np.int16)
        live.apply(EcgSamplesV1(stream_id=stream, seq=k, fs=FS, t0=T0 + timedelta(seconds=start / FS), gain=200.0,
                                n=adc.size, data=encode_i16(adc), source="replay", final=start + 360 >= n))
    for i in range(int(seconds / 0.8)):
        bad = 100 <= i < 104
        live.apply(EcgLabelV1(
            stream_id=stream, beat_index=i, r_sample=round(0.8 * i * FS), r_time=T0 + timedelta(seconds=0.8 * i + 0.01),
            rr_prev_s=0.8, quality="unreadable" if bad else "ok", quality_prob=0.9 if bad else 0.0, af_prob=0.1,
            af=None if bad else False, beat_class=None if bad else ("V" if i % 50 == 7 else "N"),
            class_probs={"N": 1.0}))  # fmt: skip
    return live


def test_kaggle_layout_is_recognised() -> None:
    row = ",".join(["0.5"] * 187)
    assert kaggle_layout((row + ",1.0\n" + row + ",0.0\n").encode())
    assert kaggle_layout((row + "\n").encode())
    assert not kaggle_layout(b"time,ECG\n0,0.1\n")
    assert not kaggle_layout((",".join(["0.5"] * 100) + "\n").encode())
    assert not kaggle_layout((",".join(["a"] * 187) + "\n").encode())


def test_upload_dispatch_is_ingests() -> None:
    rec, fmt = _parse({".csv": b"time,ECG\n" + b"".join(f"{i / 250},0.1\n".encode() for i in range(500))}, None)
    assert fmt == "CSV" and rec.fs == 250.0 and rec.leads == ("ECG",)
    with pytest.raises(RecordingError, match="upload either a WFDB"):
        _parse({".hea": b"100 1 360 10\n"}, None)
    with pytest.raises(RecordingError, match="no time column"):
        _parse({".csv": b"ECG\n0.1\n"}, None)


def test_signal_windows_of_five_minutes_at_360_hz() -> None:
    live = _retained()
    v = live.streams["web-x:MLII"]
    assert v.n_samples == 300 * 360  # retained: nothing dropped
    origin = stream_origin(v, 300 * 360)
    assert origin == pytest.approx(T0.timestamp())
    t = time.perf_counter()
    ov = signal_window(v, origin, None, None, max_full=0, buckets=1500)
    overview_s = time.perf_counter() - t
    assert ov["decimated"] and len(ov["x"]) == 3000 and ov["extent"][1] == pytest.approx(300 - 1 / FS, abs=1e-3)
    assert max(ov["y"]) == pytest.approx(1.2, abs=0.06)  # the envelope keeps every R peak
    assert len(ov["beats"]) == 375
    t = time.perf_counter()
    zoom = signal_window(v, origin, 60.0, 70.0)
    zoom_s = time.perf_counter() - t
    assert not zoom["decimated"] and len(zoom["x"]) == pytest.approx(3600, abs=2)
    assert all(60 <= b[0] <= 70 for b in zoom["beats"]) and len(zoom["beats"]) in (12, 13)
    whole = signal_window(v, origin, 0.0, 300.0)
    assert whole["decimated"] and len(whole["x"]) == 4000
    assert ov["spans"] == [(79.21, 82.41)]  # beats 100-103: from R 99 to R 103
    assert overview_s < 0.2 and zoom_s < 0.1, (overview_s, zoom_s)


def test_unreadable_spans_merge_adjacent_beats() -> None:
    def p(i: int, t: float, q: str) -> LabelPoint:
        return LabelPoint(i, t, 0.8, q, "N" if q == "ok" else None, False if q == "ok" else None, 0.1)

    labels = [p(0, 10.0, "ok"), p(1, 10.8, "unreadable"), p(2, 11.6, "unreadable"), p(3, 12.4, "ok"),
              p(4, 20.0, "unreadable")]  # fmt: skip
    assert unreadable_spans(labels, 10.0) == [(0.0, 1.6), (9.2, 10.0)]


def test_label_exports() -> None:
    live = _retained(20.0)
    v = live.streams["web-x:MLII"]
    rows = label_records([("web-x:MLII", "MLII", v, stream_origin(v, int(20 * FS)))])
    assert len(rows) == 25 and rows[0]["t_s"] == pytest.approx(0.01)
    parsed = list(csv.DictReader(io.StringIO(labels_csv(rows))))
    assert tuple(parsed[0]) == LABEL_FIELDS and parsed[7]["beat_class"] == "V" and parsed[0]["lead"] == "MLII"


def test_report_charts_are_svg() -> None:
    live = _retained(12.0)
    v = live.streams["web-x:MLII"]
    t, x = v.signal()
    svg = strip_svg(t, x, [(p.t, "N") for p in v.labels], float(t[0]))
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert strip_svg(t, x, [], float(t[0])) != svg
    assert "</svg>" in hr_trend_svg([], [])
    hourly = [{"hour_start": T0.timestamp(), "mean_bpm": 74.0, "min_bpm": 60.0, "max_bpm": 92.0}]
    minutes = [(T0.timestamp() + 60 * i, 74.0, 70.0, 80.0) for i in range(3)]
    assert "</svg>" in hr_trend_svg(hourly, minutes)
