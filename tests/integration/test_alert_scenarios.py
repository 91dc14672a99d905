"""Simulator scenarios with known truth through the real pipeline → exactly the expected alarms.

ecg.samples (published as ingest would, 1-s chunks) → dsp → ecg.beats + ecg.status →
inference (shipped ONNX models) → ecg.labels → alerts (rhythm + technical engines) →
alerts.events → signed webhooks to a real local receiver, all on the real broker and Redis.
Each scenario's stream must raise exactly its expected alarm and nothing else — in
particular no rhythm alarm during a lead-off and no pause across a data gap.

The VT run is checked at the label contract with the simulator's ground truth as labels (the
shipped beat model does not yet label the simulator's sustained VT as V — see the issue
notes), through the same alerts service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from redis.asyncio import Redis

from streamdx.encoding import encode_i16
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import AlertsMetrics, DspMetrics, InferenceMetrics, PublisherMetrics
from streamdx.schemas import AlertEventV1, EcgLabelV1, EcgSamplesV1
from streamdx.worker_service import ServiceParts, WorkerRuntime, health_app
from streamdx_alerts.main import build_alerts_service
from streamdx_alerts.rules import Profiles
from streamdx_alerts.settings import AlertsSettings
from streamdx_devkit.sim import ecg_synthesize
from streamdx_dsp.main import build_dsp_workers, dsp_warm_up
from streamdx_dsp.settings import DspSettings
from streamdx_inference.main import build_inference_workers
from streamdx_inference.settings import InferenceSettings
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import running_workers, serve
from tests.integration.webhook_receiver import Receiver

pytestmark = pytest.mark.integration

FS = 250.0
GAIN = 200.0
DURATION = 120.0
ADMIN = "scenario-admin-token"
NO_DATA_TIMEOUT_S = 3.0


@dataclass
class Rig:
    base: str
    receiver: Receiver
    publisher: Publisher
    tag: str


@contextlib.asynccontextmanager
async def running_alerts(stack: StackInfo, settings: AlertsSettings) -> AsyncIterator[str]:
    """The alerts service (workers, background tasks, API) in the test loop; yields its base URL."""
    metrics = AlertsMetrics(CollectorRegistry())
    redis = Redis.from_url(stack.redis_url)
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    stop = asyncio.Event()
    parts: ServiceParts = build_alerts_service(WorkerRuntime(settings, metrics, redis, pub, stop), settings,
                                               Profiles())
    tasks = [asyncio.create_task(w.run(stop)) for w in parts.workers]
    tasks += [asyncio.create_task(job(stop)) for job in parts.background]
    try:
        async with serve(health_app(parts.workers, tasks, metrics.registry, parts.routers,  # type: ignore[arg-type]
                                    parts.app_state)) as base:
            yield base
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await pub.stop()
        await redis.aclose()


@pytest.fixture(scope="module")
async def rig(stack: StackInfo) -> AsyncIterator[Rig]:
    tag = uuid.uuid4().hex[:6]
    common: dict[str, Any] = {"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url,
                              "batch_timeout_ms": 50}
    dsp = DspSettings(**common, dsp_group=f"dsp-a-{tag}", dsp_esr_group=f"dsp-esr-a-{tag}")
    inf = InferenceSettings(**common, inference_ecg_group=f"inf-ecg-a-{tag}", inference_esr_group=f"inf-esr-a-{tag}")
    alerts = AlertsSettings(
        **common, alerts_rhythm_group=f"al-r-{tag}", alerts_status_group=f"al-s-{tag}",
        alerts_esr_group=f"al-e-{tag}", alerts_delivery_group=f"al-w-{tag}", alerts_admin_token=SecretStr(ADMIN),
        no_data_timeout_s=NO_DATA_TIMEOUT_S, webhook_allow_private=True, webhook_backoff_initial_s=0.1,
    )
    secret_holder = Receiver(secret="whsec_" + "A" * 32)
    await dsp_warm_up()
    pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()))
    await pub.start()
    dsp_m, inf_m = DspMetrics(CollectorRegistry()), InferenceMetrics(CollectorRegistry())
    async with running_workers(stack, dsp_m, lambda rt: build_dsp_workers(rt, dsp)), \
            running_workers(stack, inf_m, lambda rt: build_inference_workers(rt, inf)), \
            running_alerts(stack, alerts) as base:  # fmt: skip
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            r = await c.post("/v1/subscriptions", json={"url": secret_holder.url, "description": "scenarios",
                                                        "stream_ids": []})
            assert r.status_code == 201, r.text
            secret_holder.secret = r.json()["secret"]
            sub_id = r.json()["id"]
        await secret_holder.start()
        try:
            yield Rig(base, secret_holder, pub, tag)
        finally:
            # the delivery queue lives in the suite's shared Redis: leave nothing for later tests' dispatchers
            async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
                assert (await c.delete(f"/v1/subscriptions/{sub_id}")).status_code == 204
            await secret_holder.stop()
            await pub.stop()


def chunks(stream: str, scenario: str, seed: int, *, drop: range = range(0), final: bool = True,
           t0: datetime | None = None, first_seq: int = 0, seconds: float = DURATION) -> list[EcgSamplesV1]:
    ecg = ecg_synthesize(seconds, FS, seed=seed, scenario=scenario)
    adc = np.clip(np.round(ecg.signal_mv * GAIN), -32768, 32767).astype(np.int16)
    n = int(FS)
    start = t0 or datetime.now(UTC) - timedelta(seconds=seconds)
    out, last = [], first_seq - 1
    total = adc.size // n
    for k in range(total):
        if k in drop:
            continue
        seq = first_seq + k
        out.append(EcgSamplesV1(stream_id=stream, seq=seq, fs=FS, t0=start + timedelta(seconds=k), gain=GAIN, n=n,
                                data=encode_i16(adc[k * n:(k + 1) * n]), gap_before=seq - last - 1,
                                final=final and k == total - 1, source="simulator"))  # fmt: skip
        last = seq
    return out


async def publish_interleaved(pub: Publisher, streams: list[list[EcgSamplesV1]]) -> None:
    longest = max(len(s) for s in streams)
    for i in range(longest):
        await pub.publish_many([s[i] for s in streams if i < len(s)])


def kinds(events: list[AlertEventV1]) -> list[tuple[str, str]]:
    return [(e.kind, e.state) for e in sorted(events, key=lambda e: (e.started_at, e.alert_id, e.seq))]


async def events_settled(stack: StackInfo, stream: str, expect: int, timeout_s: float = 150.0,
                         quiet_s: float = 4.0) -> list[AlertEventV1]:
    """The stream's alert events once ``expect`` arrived and nothing more came for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    events: list[AlertEventV1] = []
    while time.monotonic() < deadline:
        events = await read_messages(stack.kafka_bootstrap, AlertEventV1, stream, timeout_s=3.0)
        if len(events) >= expect:
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(quiet_s)
    return await read_messages(stack.kafka_bootstrap, AlertEventV1, stream, timeout_s=3.0)


EXPECTED: dict[str, list[tuple[str, str]]] = {
    "mixed": [("af_episode", "raised"), ("af_episode", "resolved")],
    "asystole": [("asystole", "raised"), ("asystole", "resolved")],
    "leadoff": [("lead_off", "raised"), ("lead_off", "resolved")] * 2,
    "gap": [("data_gap", "raised"), ("data_gap", "resolved")],
    "sinus": [],
}


async def test_each_scenario_raises_exactly_its_alarm(rig: Rig, stack: StackInfo) -> None:
    streams = {name: f"sc-{name}-{rig.tag}" for name in EXPECTED}
    plan = [
        chunks(streams["mixed"], "mixed", 1),
        chunks(streams["asystole"], "asystole", 2),
        chunks(streams["leadoff"], "leadoff", 3),
        chunks(streams["gap"], "sinus", 4, drop=range(40, 55)),  # 15 s without data
        chunks(streams["sinus"], "ectopy", 5),
    ]
    await publish_interleaved(rig.publisher, plan)
    got: dict[str, list[tuple[str, str]]] = {}
    for name, stream in streams.items():
        events = await events_settled(stack, stream, len(EXPECTED[name]))
        got[name] = kinds(events)
        assert len({e.event_id for e in events}) == len(events), f"{name}: duplicate events"
    assert got == EXPECTED
    # the lead-off raised no rhythm alarm; the gap's missing time is reported
    gap_events = await read_messages(stack.kafka_bootstrap, AlertEventV1, streams["gap"])
    assert abs(float(gap_events[0].details["missing_s"]) - 15.0) < 1.01
    asys = await read_messages(stack.kafka_bootstrap, AlertEventV1, streams["asystole"])
    t_true = (plan[1][0].t0 + timedelta(seconds=0.5 * DURATION))  # the scenario's asystole starts at 50 %
    assert abs((asys[0].started_at - t_true).total_seconds()) < 2.0
    assert asys[0].severity == "critical"

    # every event reached the subscriber's webhook once, signed (the receiver verifies with svix)
    all_ids = {e.event_id for s in streams.values()
               for e in await read_messages(stack.kafka_bootstrap, AlertEventV1, s)}  # fmt: skip
    ok = False
    for _ in range(100):
        if all_ids <= set(rig.receiver.delivered_ids()):
            ok = True
            break
        await asyncio.sleep(0.1)
    assert ok, sorted(all_ids - set(rig.receiver.delivered_ids()))
    ours = [h for h in rig.receiver.delivered() if h.webhook_id in all_ids]
    assert all(h.verified for h in ours) and len({h.webhook_id for h in ours}) == len(ours)

    # the Holter summary of the AF stream over the API
    async with httpx.AsyncClient(base_url=rig.base) as c:
        assert (await c.get(f"/v1/streams/{streams['mixed']}/summary")).status_code == 401
        r = await c.get(f"/v1/streams/{streams['mixed']}/summary", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        summary = r.json()
        assert summary["af_episode_count"] == 1 and 0.1 < summary["af_burden"] < 0.6
        assert 55 < summary["hr_mean_bpm"] < 100
        r = await c.get("/v1/streams/nope/summary", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 404


def truth_labels(stream: str, scenario: str, seed: int) -> list[EcgLabelV1]:
    """Labels from the simulator's ground truth (an oracle labeler) at the label contract."""
    ecg = ecg_synthesize(DURATION, FS, seed=seed, scenario=scenario)
    start = datetime.now(UTC) - timedelta(seconds=DURATION)
    r = ecg.r_samples
    out = []
    for i in range(1, r.size):
        cls = ecg.beat_aami[i]
        out.append(EcgLabelV1(
            stream_id=stream, beat_index=i - 1, r_sample=int(r[i]), r_time=start + timedelta(seconds=r[i] / FS),
            rr_prev_s=float(r[i] - r[i - 1]) / FS, quality="ok", quality_prob=0.0, af_prob=0.0, af=False,
            beat_class=cls, class_probs={cls: 1.0}, models={"truth": "simulator"},
        ))  # fmt: skip
    return out


async def test_vt_run_at_the_label_contract(rig: Rig, stack: StackInfo) -> None:
    stream = f"sc-vt-{rig.tag}"
    labels = truth_labels(stream, "vt", 6)
    n_vt = sum(1 for m in labels if m.beat_class == "V")
    assert n_vt > 10
    await rig.publisher.publish_many(labels)
    events = await events_settled(stack, stream, 2)
    assert kinds(events) == [("vt_run", "raised"), ("vt_run", "resolved")]
    raised, resolved = sorted(events, key=lambda e: e.seq)
    assert raised.severity == "critical" and resolved.details["beats"] >= 10


async def test_no_data_raised_when_a_device_goes_silent_and_resolved_when_it_returns(
    rig: Rig, stack: StackInfo
) -> None:
    stream = f"sc-nodata-{rig.tag}"
    t0 = datetime.now(UTC) - timedelta(seconds=20)
    await rig.publisher.publish_many(chunks(stream, "sinus", 7, final=False, t0=t0, seconds=10))
    events = await events_settled(stack, stream, 1, timeout_s=60, quiet_s=0.5)
    assert kinds(events) == [("no_data", "raised")]
    assert events[0].technical
    await rig.publisher.publish_many(chunks(stream, "sinus", 8, final=True, t0=t0 + timedelta(seconds=10),
                                            first_seq=10, seconds=10))
    events = await events_settled(stack, stream, 2, timeout_s=60, quiet_s=0.5)
    assert kinds(events) == [("no_data", "raised"), ("no_data", "resolved")]
