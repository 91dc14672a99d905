"""Synthetic ECG → ingest (HTTP) → ecg.samples → dsp worker → ecg.beats, on the real broker and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import DspMetrics, PublisherMetrics
from streamdx.schemas import EcgBeatV1, EcgSamplesV1, EcgStatusV1
from streamdx_devkit.sim import ecg_synthesize
from streamdx_devkit.sim.device import create_device, stream_ecg
from streamdx_dsp.main import build_dsp_workers, dsp_warm_up
from streamdx_dsp.settings import DspSettings
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import running_workers, serve_ingest
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration


def match(truth: np.ndarray, found: np.ndarray, tol: int) -> tuple[int, int, int]:
    """One-to-one matching within ``tol`` samples: (tp, fn, fp)."""
    used = np.zeros(found.size, bool)
    tp = 0
    for r in truth:
        if found.size == 0:
            break
        i = int(np.argmin(np.abs(found - r) + used * 10**9))
        if not used[i] and abs(int(found[i]) - int(r)) <= tol:
            used[i] = True
            tp += 1
    return tp, truth.size - tp, int((~used).sum())


@pytest.fixture(scope="module")
async def pipeline(stack: StackInfo) -> AsyncIterator[str]:
    """ingest on a real port and a dsp worker (own group) running in the test loop."""
    settings = DspSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                           dsp_group=f"dsp-test-{uuid.uuid4().hex[:6]}", batch_timeout_ms=50)
    await dsp_warm_up()
    async with running_workers(stack, DspMetrics(CollectorRegistry()), lambda rt: build_dsp_workers(rt, settings)), \
            serve_ingest(settings_for(stack)) as base:
        yield base


async def beats_for(stack: StackInfo, stream: str, min_count: int, timeout_s: float = 60) -> list[EcgBeatV1]:
    beats: list[EcgBeatV1] = []
    for _ in range(int(timeout_s / 0.5)):
        beats = await read_messages(stack.kafka_bootstrap, EcgBeatV1, stream)
        if len(beats) >= min_count:
            break
        await asyncio.sleep(0.5)
    return beats


@pytest.mark.parametrize(("scenario", "fs"), [("mixed", 250.0), ("ectopy", 360.0)])
async def test_synthetic_stream_yields_its_annotated_beats(
    pipeline: str, stack: StackInfo, scenario: str, fs: float
) -> None:
    ecg = ecg_synthesize(60, fs, seed=11, scenario=scenario)
    device = f"ecg-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=30) as client:
        key = await create_device(client, pipeline, ADMIN, device)
        report = await stream_ecg(client, pipeline, device, key, ecg, chunk_s=1.0, speed=0.0)
    assert report.ok, report
    truth = ecg.r_samples
    # the stream is not final: beats within the core's latency (< 5 s) of the end are still pending
    settled = truth[truth < ecg.n_samples - 5 * fs]
    beats = await beats_for(stack, device, settled.size - 1)
    assert [b.beat_index for b in beats] == list(range(len(beats)))
    found = np.array([b.r_sample for b in beats])
    tp, fn, fp = match(settled[1:], found[found <= settled[-1] + 0.15 * fs], tol=round(0.150 * fs))
    se, ppv = tp / (tp + fn), tp / max(tp + fp, 1)
    assert se >= 0.98 and ppv >= 0.98, (se, ppv, fn, fp)
    b = beats[len(beats) // 2]
    assert b.waveform_mv().shape == (300,) and b.quality.score > 0.5 and not b.quality.flat
    t0 = datetime.fromisoformat(report.as_dict()["t0"]) if "t0" in report.as_dict() else None
    if t0 is not None:
        assert abs((b.r_time - t0).total_seconds() - b.r_sample / fs) < 1e-3


async def test_gap_resets_and_marks_next_beat_and_flat_line_has_no_beats(pipeline: str, stack: StackInfo) -> None:
    fs = 250.0
    ecg = ecg_synthesize(40, fs, seed=5, scenario="sinus")
    device = f"gap-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    async with httpx.AsyncClient(base_url=pipeline, timeout=30) as client:
        key = await create_device(client, pipeline, ADMIN, device)
        auth = {"Authorization": f"Bearer {key}"}
        adc = ecg.to_adc(200.0, 0)
        for seq in range(40):
            if 15 <= seq < 18:
                continue  # three chunks lost on the way
            part = adc[seq * 250 : (seq + 1) * 250]
            if seq >= 30:
                part = np.zeros(250, np.int16)  # lead off: a flat line
            body = {"seq": seq, "fs": fs, "t0": (t0 + timedelta(seconds=seq)).isoformat(), "gain": 200.0,
                    "samples": part.tolist()}
            r = await client.post(f"/v1/streams/{device}/ecg", json=body, headers=auth)
            assert r.status_code == 202, r.text
    beats = await beats_for(stack, device, 25)
    gap_beats = [b for b in beats if b.after_gap]
    assert len(gap_beats) == 1
    g = gap_beats[0]
    assert g.r_sample >= 18 * 250  # first beat after the gap, on the sample clock that skips it
    assert abs((g.r_time - t0).total_seconds() - g.r_sample / fs) < 1e-3
    assert all(b.r_sample < 15 * 250 or b.r_sample >= 18 * 250 for b in beats)
    assert not any(b.r_sample > 30.5 * 250 for b in beats), "beats invented on a flat line"
    samples = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)
    assert [m.gap_before for m in samples if m.seq == 18] == [3]
    # one ecg.status per applied chunk: the gap's missing time, then the flat line as lost signal
    status: list[EcgStatusV1] = []
    for _ in range(60):
        status = await read_messages(stack.kafka_bootstrap, EcgStatusV1, device)
        if len(status) >= 37:
            break
        await asyncio.sleep(0.5)
    assert [s.seq for s in status] == [q for q in range(40) if not 15 <= q < 18]
    by_seq = {s.seq: s for s in status}
    assert by_seq[18].gap_s == pytest.approx(3.0) and all(s.gap_s == 0 for s in status if s.seq != 18)
    assert by_seq[39].lost == [(30 * 250, 40 * 250)] and all(s.lost == [] for s in status if s.seq < 30)
    assert all(s.horizon_sample <= s.end_sample == (s.seq + 1) * 250 for s in status)


async def test_bad_chunk_on_the_topic_goes_to_dlq_with_reason(pipeline: str, stack: StackInfo) -> None:
    """A producer that bypasses ingest cannot poison the dsp worker: the record is dead-lettered."""
    from streamdx.messaging.codec import OutgoingRecord
    from streamdx.schemas import dlq_topic
    from tests.integration.kafka_reading import read_topic

    pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()))
    await pub.start()
    key = f"bad-{uuid.uuid4().hex[:8]}"
    body = (b'{"stream_id": "%s", "seq": 0, "fs": 50, "t0": "2026-01-01T00:00:00Z", "gain": 200, "n": 1, '
            b'"data": "AAA="}' % key.encode())
    await pub.publish_records([OutgoingRecord("ecg.samples", key.encode(), body, (("schema", b"ecg.samples/v1"),))])
    await pub.stop()
    dead = []
    for _ in range(60):
        dead = [r for r in await read_topic(stack.kafka_bootstrap, dlq_topic("ecg.samples")) if r.key == key.encode()]
        if dead:
            break
        await asyncio.sleep(0.5)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq-reason"] == b"validation" and b"fs" in headers["dlq-detail"]
    assert dead[0].value == body
