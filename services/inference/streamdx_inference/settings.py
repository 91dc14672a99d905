"""Settings of the inference service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from streamdx.settings import WorkerSettings

__all__ = ["InferenceSettings", "default_models_dir"]


def default_models_dir() -> Path:
    """``models/`` of the source tree (the container image sets ``MODELS_DIR``)."""
    return Path(__file__).resolve().parents[3] / "models"


class InferenceSettings(WorkerSettings):
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics")
    models_dir: Path = Field(default_factory=default_models_dir, description="Directory of the ONNX models")
    inference_esr_group: str = Field(default="inference-esr", description="Consumer group of the ESR forecaster")
    inference_ecg_group: str = Field(default="inference-ecg", description="Consumer group of the ECG beat labeler")
    ecg_models_int8: bool = Field(default=False,
                                  description="Run the INT8 (QDQ) ECG models (model.int8.onnx; TensorRT on Jetson)")
    onnx_providers: str = Field(default="CPUExecutionProvider",
                                description="onnxruntime providers, comma-separated, in order of preference")
    inference_slides_group: str = Field(default="inference-slides",
                                        description="Consumer group of the slide tile detector (slides.tiles)")
    inference_slides_merge_group: str = Field(
        default="inference-slides-merge",
        description="Consumer group of the per-slide aggregator (slides.detections → merged result in Redis)",
    )
    slides_model_dir: Path | None = Field(
        default=None,
        description="Directory of the slide detector (model.onnx + model.json; unset: MODELS_DIR/slides_glomeruli; "
        "when it has no model.onnx the detector worker is not started)",
    )
    slides_batch_tiles: int = Field(
        default=8, ge=1, le=256,
        description="Tiles per consumed batch of the detector (each tile is a ~0.1–1 MB record)",
    )
    slides_merge_iou: float = Field(default=0.5, gt=0, lt=1, description="IoU of the cross-tile box fusion")
