"""``streamdx serve inference``: ONNX model workers (ECG beat labels, ESR 60-minute forecast)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import InferenceMetrics
from streamdx.schemas import EcgBeatV1, EsrHeightV1, Topic
from streamdx.settings import service_parser
from streamdx.state_store import StateStore
from streamdx.worker_service import WorkerRuntime, serve_workers
from streamdx_inference.ecg.labeler import EcgLabeler
from streamdx_inference.ecg_handler import EcgBeatsHandler, EcgLabelStateCodec
from streamdx_inference.esr.forecaster import EsrForecaster
from streamdx_inference.esr_handler import EsrHeightsHandler, TubeSeriesCodec
from streamdx_inference.onnx_providers import onnx_providers_select
from streamdx_inference.settings import InferenceSettings

__all__ = ["build_inference_workers", "build_parser", "main"]


def build_inference_workers(
    rt: WorkerRuntime[InferenceMetrics], settings: InferenceSettings
) -> list[StreamWorker[Any, Any]]:
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
    labeler = EcgLabeler.from_dir(settings.models_dir, providers=providers, int8=settings.ecg_models_int8)
    ecg: StreamWorker[EcgBeatV1, Any] = StreamWorker(
        topic=Topic.ECG_BEATS, group=settings.inference_ecg_group, model=EcgBeatV1,
        batch_handler=EcgBeatsHandler(labeler, rt.metrics), codec=EcgLabelStateCodec(), publisher=rt.publisher,
        store=StateStore(rt.redis, settings.inference_ecg_group), metrics=rt.metrics,
        bootstrap=settings.kafka_bootstrap, batch_max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
    )
    return [ecg, esr]


def build_parser() -> argparse.ArgumentParser:
    return service_parser(
        "streamdx serve inference",
        "Run the model service: per-beat ECG labels (ecg.beats → ecg.labels: quality gate, AF, AAMI beat "
        "class; batched) and ESR 60-minute forecasts (esr.heights → esr.forecasts) with the "
        "ONNX models in MODELS_DIR. Serves /healthz, /readyz and /metrics on METRICS_HOST:METRICS_PORT. "
        "Configured by environment variables only; stops on Ctrl-C or SIGTERM after finishing the batch "
        "in progress.",
        InferenceSettings,
    )


def main(argv: Sequence[str]) -> int:
    build_parser().parse_args(argv)
    settings = InferenceSettings()

    async def build(rt: WorkerRuntime[InferenceMetrics]) -> list[StreamWorker[Any, Any]]:
        return build_inference_workers(rt, settings)

    return serve_workers("inference", settings, InferenceMetrics(CollectorRegistry()), build)
