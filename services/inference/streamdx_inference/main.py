"""``streamdx serve inference``: ONNX model workers (ESR 60-minute forecast)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamdx.messaging.worker import StreamWorker
from streamdx.schemas import EsrHeightV1, Topic
from streamdx.state_store import StateStore
from streamdx.worker_service import WorkerRuntime, serve_workers
from streamdx_inference.esr.forecaster import EsrForecaster
from streamdx_inference.esr_handler import EsrHeightsHandler, TubeSeriesCodec
from streamdx_inference.onnx_providers import onnx_providers_select
from streamdx_inference.settings import InferenceSettings

__all__ = ["build_inference_workers", "main"]


def build_inference_workers(rt: WorkerRuntime, settings: InferenceSettings) -> list[StreamWorker[Any, Any]]:
    import onnxruntime as ort

    providers = onnx_providers_select(settings.onnx_providers, ort.get_available_providers())
    forecaster = EsrForecaster.load(settings.models_dir / "esr_gru", providers=providers)
    esr: StreamWorker[EsrHeightV1, Any] = StreamWorker(
        topic=Topic.ESR_HEIGHTS, group=settings.inference_esr_group, model=EsrHeightV1,
        handler=EsrHeightsHandler(forecaster), codec=TubeSeriesCodec(), publisher=rt.publisher,
        store=StateStore(rt.redis, settings.inference_esr_group), metrics=rt.metrics,
        bootstrap=settings.kafka_bootstrap, batch_max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
    )
    return [esr]


def main(argv: Sequence[str]) -> int:
    settings = InferenceSettings()

    async def build(rt: WorkerRuntime) -> list[StreamWorker[Any, Any]]:
        return build_inference_workers(rt, settings)

    return serve_workers("inference", settings, build)
