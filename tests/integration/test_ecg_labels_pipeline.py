"""A WFDB record uploaded to ingest → ecg.samples → dsp → ecg.beats → inference → ecg.labels, on the
real broker and Redis with the shipped ECG models: every beat gets exactly one label, the labels
are sensible for synthetic sinus rhythm with PVCs, and redelivered beats produce no duplicates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import DspMetrics, InferenceMetrics, PublisherMetrics
from streamdx.schemas import EcgBeatV1, EcgLabelV1, Topic
from streamdx_devkit.sim import ecg_synthesize
from streamdx_devkit.sim.device import create_device
from streamdx_dsp.main import build_dsp_workers, dsp_warm_up
from streamdx_dsp.settings import DspSettings
from streamdx_inference.main import build_inference_workers
from streamdx_inference.settings import InferenceSettings
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages, read_topic
from tests.integration.servers import running_workers, serve_ingest
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration

FS = 360.0


@dataclass
class Pipeline:
    base: str
    inference: InferenceMetrics
    group: str


@pytest.fixture(scope="module")
async def pipeline(stack: StackInfo) -> AsyncIterator[Pipeline]:
    """ingest, a dsp worker and the inference workers (own groups), all in the test loop."""
    tag = uuid.uuid4().hex[:6]
    dsp = DspSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, dsp_group=f"dsp-l-{tag}",
                      dsp_esr_group=f"dsp-esr-l-{tag}", batch_timeout_ms=50)  # fmt: skip
    inf = InferenceSettings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                            inference_ecg_group=f"inf-ecg-{tag}", inference_esr_group=f"inf-esr-{tag}",
                            batch_timeout_ms=50)  # fmt: skip
    metrics = InferenceMetrics(CollectorRegistry())
    await dsp_warm_up()
    async with running_workers(stack, DspMetrics(CollectorRegistry()), lambda rt: build_dsp_workers(rt, dsp)), \
            running_workers(stack, metrics, lambda rt: build_inference_workers(rt, inf)), \
            serve_ingest(settings_for(stack)) as base:
        yield Pipeline(base, metrics, inf.inference_ecg_group)


def match_truth(truth: np.ndarray, found: np.ndarray, tol: int) -> np.ndarray:
    """For each truth beat, the index of the found beat within ``tol`` samples (-1 if none)."""
    out = np.full(truth.size, -1)
    for i, r in enumerate(truth):
        j = int(np.argmin(np.abs(found - r))) if found.size else -1
        if j >= 0 and abs(int(found[j]) - int(r)) <= tol:
            out[i] = j
    return out


async def settled_labels(stack: StackInfo, stream: str, n: int, timeout_s: float = 120) -> list[EcgLabelV1]:
    labels: list[EcgLabelV1] = []
    for _ in range(int(timeout_s / 0.5)):
        labels = await read_messages(stack.kafka_bootstrap, EcgLabelV1, stream)
        if len(labels) >= n:
            break
        await asyncio.sleep(0.5)
    return labels


async def test_replayed_record_gets_one_sensible_label_per_beat(
    pipeline: Pipeline, stack: StackInfo, tmp_path: Path
) -> None:
    import wfdb

    ecg = ecg_synthesize(120, FS, seed=31, scenario="ectopy")
    assert "V" in ecg.beat_aami
    wfdb.wrsamp("holter", fs=FS, units=["mV"], sig_name=["MLII"], p_signal=ecg.signal_mv[:, None], fmt=["212"],
                adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))  # fmt: skip
    device = f"lab-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=30) as client:
        key = await create_device(client, pipeline.base, ADMIN, device)
        auth = {"Authorization": f"Bearer {key}"}
        files = [("files", ("holter.hea", (tmp_path / "holter.hea").read_bytes())),
                 ("files", ("holter.dat", (tmp_path / "holter.dat").read_bytes()))]  # fmt: skip
        r = await client.post("/v1/recordings", files=files, data={"stream_id": device, "speed": "0"}, headers=auth)
        assert r.status_code == 202, r.text
        body = r.json()
        (stream,) = body["streams"]
        progress: dict[str, object] = {}
        for _ in range(600):
            progress = (await client.get(body["status_url"], headers=auth)).json()
            if progress["status"] != "replaying":
                break
            await asyncio.sleep(0.1)
        assert progress["status"] == "done", progress

    # the final chunk flushes the dsp: every beat of the record is published
    beats: list[EcgBeatV1] = []
    for _ in range(240):
        beats = await read_messages(stack.kafka_bootstrap, EcgBeatV1, stream)
        if beats and beats[-1].r_sample > ecg.n_samples - 3 * FS:
            break
        await asyncio.sleep(0.5)
    assert [b.beat_index for b in beats] == list(range(len(beats)))
    assert len(beats) >= 0.95 * ecg.r_samples.size

    labels = await settled_labels(stack, stream, len(beats))
    assert sorted(m.beat_index for m in labels) == [b.beat_index for b in beats], "not exactly one label per beat"
    by_index = {m.beat_index: m for m in labels}
    for b in beats:
        m = by_index[b.beat_index]
        assert (m.r_sample, m.r_time, m.rr_prev_s, m.window) == (b.r_sample, b.r_time, b.rr_prev_s, b.window)
        assert set(m.models) == {"ecg_quality", "ecg_af", "ecg_beats"}

    # sensible: clean synthetic sinus rhythm with isolated PVCs and PACs
    found = np.array([b.r_sample for b in beats])
    idx = match_truth(ecg.r_samples, found, round(0.15 * FS))
    aami = np.array(ecg.beat_aami)
    settled = np.arange(idx.size) >= 10  # after the per-stream context has filled
    ok = [by_index[int(j)].quality == "ok" for j in idx[settled] if j >= 0]
    assert np.mean(ok) >= 0.9, f"only {np.mean(ok):.0%} of clean beats pass the quality gate"
    normal = [by_index[int(j)] for j, c, s in zip(idx, aami, settled, strict=True) if j >= 0 and c == "N" and s]
    normal_ok = [m for m in normal if m.quality == "ok"]
    assert np.mean([m.beat_class == "N" for m in normal_ok]) >= 0.85
    assert np.mean([m.af is False for m in normal_ok]) >= 0.9, "sinus rhythm with ectopy called AF"
    pvcs = [by_index[int(j)] for j, c in zip(idx, aami, strict=True) if j >= 0 and c == "V"]
    assert pvcs and np.mean([m.beat_class == "V" for m in pvcs]) >= 0.5, [m.beat_class for m in pvcs]

    # at-least-once delivery: the dsp republishes the stream's beats; no label is emitted twice
    raw = [r for r in await read_topic(stack.kafka_bootstrap, Topic.ECG_BEATS) if r.key == stream.encode()]
    consumed = pipeline.inference.registry.get_sample_value(
        "streamdx_messages_consumed_total", {"topic": Topic.ECG_BEATS, "group": pipeline.group}
    ) or 0.0
    from streamdx.messaging.codec import OutgoingRecord

    pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()))
    await pub.start()
    await pub.publish_records([OutgoingRecord(Topic.ECG_BEATS, r.key, r.value, tuple(r.headers)) for r in raw])
    await pub.stop()
    for _ in range(240):
        now = pipeline.inference.registry.get_sample_value(
            "streamdx_messages_consumed_total", {"topic": Topic.ECG_BEATS, "group": pipeline.group}
        ) or 0.0
        if now >= consumed + len(raw):
            break
        await asyncio.sleep(0.25)
    assert now >= consumed + len(raw), "the inference worker did not consume the redelivered beats"
    await asyncio.sleep(1.0)  # outputs of the last batch are acknowledged before its offsets are committed
    again = await read_messages(stack.kafka_bootstrap, EcgLabelV1, stream)
    assert len(again) == len(labels), f"{len(again) - len(labels)} duplicate labels after redelivery"
