"""``streamdx serve inference``: ONNX model workers (ECG beat labels, ESR 60-minute forecast)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from streamdx.logs import log_fields
from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import InferenceMetrics
from streamdx.schemas import EcgBeatV1, EsrHeightV1, SlideDetectionsV1, SlideTileV1, Topic
from streamdx.settings import service_parser
from streamdx.slide_records import SlideRecords
from streamdx.state_store import StateStore
from streamdx.worker_service import WorkerRuntime, serve_workers
from streamdx_inference.ecg.labeler import EcgLabeler
from streamdx_inference.ecg_handler import EcgBeatsHandler, EcgLabelStateCodec
from streamdx_inference.esr.forecaster import EsrForecaster
from streamdx_inference.esr_handler import EsrHeightsHandler, TubeSeriesCodec
from streamdx_inference.onnx_providers import onnx_providers_select
from streamdx_inference.settings import InferenceSettings
from streamdx_inference.slides_handler import SlideTilesHandler
from streamdx_inference.slides_merge_handler import SlideMergeCodec, SlideMergeHandler

__all__ = ["build_inference_workers", "build_parser", "build_slides_workers", "main"]

log = logging.getLogger("streamdx.inference")


def build_slides_workers(
    rt: WorkerRuntime[InferenceMetrics], settings: InferenceSettings, providers: Sequence[str]
) -> list[StreamWorker[Any, Any]]:
    """The slide tile detector (when its model is installed) and the per-slide aggregator."""
    from streamdx_inference.slides.detector import SlideDetector

    workers: list[StreamWorker[Any, Any]] = []
    model_dir = settings.slides_model_dir or settings.models_dir / "slides_glomeruli"
    if (model_dir / "model.onnx").is_file():
        detector = SlideDetector.load(model_dir, providers=providers)
        tiles: StreamWorker[SlideTileV1, Any] = StreamWorker(
            topic=Topic.SLIDES_TILES, group=settings.inference_slides_group, model=SlideTileV1,
            batch_handler=SlideTilesHandler(detector, rt.metrics), codec=None, publisher=rt.publisher,
            store=StateStore(rt.redis, settings.inference_slides_group), metrics=rt.metrics,
            batch_max_records=settings.slides_batch_tiles, **settings.consumer_options(),
        )
        workers.append(tiles)
    else:
        log.warning("no slide detector model: slides.tiles is not consumed",
                    extra=log_fields(model_dir=str(model_dir)))
    merge: StreamWorker[SlideDetectionsV1, Any] = StreamWorker(
        topic=Topic.SLIDES_DETECTIONS, group=settings.inference_slides_merge_group, model=SlideDetectionsV1,
        handler=SlideMergeHandler(SlideRecords(rt.redis), iou=settings.slides_merge_iou), codec=SlideMergeCodec(),
        publisher=rt.publisher, store=StateStore(rt.redis, settings.inference_slides_merge_group),
        metrics=rt.metrics, batch_max_records=settings.batch_max_records, **settings.consumer_options(),
    )
    workers.append(merge)
    return workers


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
        batch_max_records=settings.batch_max_records, checkpoint_interval_s=settings.checkpoint_interval_s,
        **settings.consumer_options(),
    )
    labeler = EcgLabeler.from_dir(settings.models_dir, providers=providers, int8=settings.ecg_models_int8)
    ecg: StreamWorker[EcgBeatV1, Any] = StreamWorker(
        topic=Topic.ECG_BEATS, group=settings.inference_ecg_group, model=EcgBeatV1,
        batch_handler=EcgBeatsHandler(labeler, rt.metrics), codec=EcgLabelStateCodec(), publisher=rt.publisher,
        store=StateStore(rt.redis, settings.inference_ecg_group), metrics=rt.metrics,
        batch_max_records=settings.batch_max_records, checkpoint_interval_s=settings.checkpoint_interval_s,
        **settings.consumer_options(),
    )
    return [ecg, esr, *build_slides_workers(rt, settings, providers)]


def build_parser() -> argparse.ArgumentParser:
    return service_parser(
        "streamdx serve inference",
        "Run the model service: per-beat ECG labels (ecg.beats → ecg.labels: quality gate, AF, AAMI beat "
        "class; batched), ESR 60-minute forecasts (esr.heights → esr.forecasts), glomerulus detection on "
        "slide tiles (slides.tiles → slides.detections; batched) and the per-slide merge (slides.detections "
        "→ the slide's result in Redis) with the ONNX models in MODELS_DIR. Serves /healthz, /readyz and "
        "/metrics on METRICS_HOST:METRICS_PORT. "
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
