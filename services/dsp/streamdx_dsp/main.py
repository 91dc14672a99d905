"""``streamdx serve dsp``: ECG conditioning/beats worker (and the ESR boundary worker)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import DspMetrics
from streamdx.schemas import EcgSamplesV1, EsrFrameV1, Topic
from streamdx.settings import service_parser
from streamdx.state_store import StateStore
from streamdx.worker_service import WorkerRuntime, serve_workers
from streamdx_dsp.core import ecg_stream_init
from streamdx_dsp.ecg_handler import DspStateCodec, EcgSamplesHandler
from streamdx_dsp.esr_handler import EsrFramesHandler, EsrTrackerCodec
from streamdx_dsp.settings import DspSettings

__all__ = ["build_dsp_workers", "build_parser", "dsp_warm_up", "main"]


def build_dsp_workers(rt: WorkerRuntime[DspMetrics], settings: DspSettings) -> list[StreamWorker[Any, Any]]:
    """The dsp service's workers on the shared runtime."""
    ecg: StreamWorker[EcgSamplesV1, Any] = StreamWorker(
        topic=Topic.ECG_SAMPLES, group=settings.dsp_group, model=EcgSamplesV1,
        handler=EcgSamplesHandler(rt.metrics, settings.dsp_beat_window),
        codec=DspStateCodec(settings.dsp_beat_window), publisher=rt.publisher,
        store=StateStore(rt.redis, settings.dsp_group), metrics=rt.metrics,
        batch_max_records=settings.batch_max_records, checkpoint_interval_s=settings.checkpoint_interval_s,
        **settings.consumer_options(),
    )
    esr: StreamWorker[EsrFrameV1, Any] = StreamWorker(
        topic=Topic.ESR_FRAMES, group=settings.dsp_esr_group, model=EsrFrameV1,
        handler=EsrFramesHandler(), codec=EsrTrackerCodec(), publisher=rt.publisher,
        store=StateStore(rt.redis, settings.dsp_esr_group), metrics=rt.metrics,
        batch_max_records=settings.batch_max_records, checkpoint_interval_s=settings.checkpoint_interval_s,
        **settings.consumer_options(),
    )
    return [ecg, esr]


async def dsp_warm_up() -> None:
    """Compile (or load from the cache) the core's kernels off the event loop, before any
    consumer joins its group: a first compile takes ~20 s and would stall heartbeats."""
    await asyncio.to_thread(ecg_stream_init, 360.0)


def build_parser() -> argparse.ArgumentParser:
    return service_parser(
        "streamdx serve dsp",
        "Run the signal-processing service: finds heartbeats in ecg.samples and publishes them to "
        "ecg.beats; measures the red-cell column height of ESR camera frames (esr.frames → esr.heights). "
        "Serves /healthz, /readyz and /metrics on METRICS_HOST:METRICS_PORT. Configured by environment "
        "variables only; stops on Ctrl-C or SIGTERM after finishing the batch in progress.",
        DspSettings,
    )


def main(argv: Sequence[str]) -> int:
    build_parser().parse_args(argv)
    settings = DspSettings()

    async def build(rt: WorkerRuntime[DspMetrics]) -> list[StreamWorker[Any, Any]]:
        await dsp_warm_up()
        return build_dsp_workers(rt, settings)

    return serve_workers("dsp", settings, DspMetrics(CollectorRegistry()), build)
