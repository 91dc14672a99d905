"""Frames of a simulated tube → ingest → esr.frames → dsp (boundary) → esr.heights → inference
(GRU) → esr.forecasts, on the real broker and Redis: a forecast appears every minute from 10."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import DspMetrics, InferenceMetrics
from streamdx.schemas import EsrForecastV1, EsrHeightV1
from streamdx.worker_service import WorkerRuntime
from streamdx_devkit.sim.device import create_device
from streamdx_devkit.sim.esr import esr_cohort_simulate
from streamdx_devkit.sim.esr_device import stream_tube
from streamdx_dsp.main import build_dsp_workers
from streamdx_dsp.settings import DspSettings
from streamdx_inference.main import build_inference_workers
from streamdx_inference.settings import InferenceSettings
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import running_workers, serve_ingest
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def esr_pipeline(stack: StackInfo) -> AsyncIterator[str]:
    tag = uuid.uuid4().hex[:6]
    common = {"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url, "batch_timeout_ms": 50}
    dsp = DspSettings(**common, dsp_group=f"dsp-{tag}", dsp_esr_group=f"dsp-esr-{tag}")  # type: ignore[arg-type]
    inf = InferenceSettings(**common, inference_esr_group=f"inf-esr-{tag}")  # type: ignore[arg-type]

    def build_dsp(rt: WorkerRuntime[DspMetrics]) -> list[StreamWorker[Any, Any]]:
        return [w for w in build_dsp_workers(rt, dsp) if w.topic == "esr.frames"]

    def build_inference(rt: WorkerRuntime[InferenceMetrics]) -> list[StreamWorker[Any, Any]]:
        return build_inference_workers(rt, inf)

    async with running_workers(stack, DspMetrics(CollectorRegistry()), build_dsp), \
            running_workers(stack, InferenceMetrics(CollectorRegistry()), build_inference), \
            serve_ingest(settings_for(stack)) as base:
        yield base


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
