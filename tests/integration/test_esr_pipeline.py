"""Frames of a simulated tube → ingest → esr.frames → dsp (boundary) → esr.heights → inference
(GRU) → esr.forecasts, on the real broker and Redis: a forecast appears every minute from 10."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from streamdx.messaging.publisher import Publisher
from streamdx.metrics import Metrics
from streamdx.schemas import EsrForecastV1, EsrHeightV1
from streamdx.sim.device import create_device
from streamdx.sim.esr import esr_cohort_simulate
from streamdx.sim.esr_device import stream_tube
from streamdx.worker_service import WorkerRuntime
from streamdx_dsp.main import build_dsp_workers
from streamdx_dsp.settings import DspSettings
from streamdx_inference.main import build_inference_workers
from streamdx_inference.settings import InferenceSettings
from streamdx_ingest.app import create_app
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import serve
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def esr_pipeline(stack: StackInfo) -> AsyncIterator[str]:
    metrics = Metrics(CollectorRegistry())
    redis = Redis.from_url(stack.redis_url)
    pub = Publisher(stack.kafka_bootstrap, metrics)
    await pub.start()
    tag = uuid.uuid4().hex[:6]
    common = {"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url, "batch_timeout_ms": 50}
    dsp = DspSettings(**common, dsp_group=f"dsp-{tag}", dsp_esr_group=f"dsp-esr-{tag}")  # type: ignore[arg-type]
    inf = InferenceSettings(**common, inference_esr_group=f"inf-esr-{tag}")  # type: ignore[arg-type]
    workers = build_dsp_workers(WorkerRuntime(dsp, metrics, redis, pub), dsp)[1:]  # the ESR worker
    workers += build_inference_workers(WorkerRuntime(inf, metrics, redis, pub), inf)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    async with serve(create_app(settings_for(stack))) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            for _ in range(100):
                if (await c.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
        yield base
    stop.set()
    await asyncio.gather(*tasks)
    await pub.stop()
    await redis.aclose()


async def test_forecasts_every_minute_from_minute_10(esr_pipeline: str, stack: StackInfo) -> None:
    tube = esr_cohort_simulate(3, seed=4)[2]
    device = f"cam-{uuid.uuid4().hex[:6]}"
    tube_id = f"{device}:t1"
    async with httpx.AsyncClient(timeout=30) as client:
        key = await create_device(client, esr_pipeline, ADMIN, device)
        report = await stream_tube(client, esr_pipeline, tube_id, key, tube, minutes=14)
    assert report.error is None and report.frames_sent == 15
    forecasts: list[EsrForecastV1] = []
    for _ in range(120):
        forecasts = await read_messages(stack.kafka_bootstrap, EsrForecastV1, tube_id)
        if len(forecasts) >= 5:
            break
        await asyncio.sleep(0.5)
    heights = await read_messages(stack.kafka_bootstrap, EsrHeightV1, tube_id)
    assert [h.minute for h in heights] == list(range(15))
    assert heights[0].height == pytest.approx(1.0) and heights[0].simulated
    assert all(a.height >= b.height for a, b in itertools.pairwise(heights)), "heights rose"
    # the tracked heights follow the simulated truth
    assert max(abs(h.height - tube.heights[h.minute]) for h in heights) < 0.03
    assert [f.minute for f in forecasts] == [10, 11, 12, 13, 14]
    for f in forecasts:
        assert f.h60_low <= f.h60 <= f.h60_high and f.simulated and f.measured_h60 is None
    assert abs(forecasts[-1].h60 - tube.heights[60]) < 0.15
