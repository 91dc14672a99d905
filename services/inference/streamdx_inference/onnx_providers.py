"""Choosing onnxruntime execution providers (TensorRT / CUDA on Jetson, CPU everywhere)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["onnx_providers_select"]


def onnx_providers_select(requested: str, available: Sequence[str]) -> list[str]:
    """The requested providers (comma-separated, in order of preference) that this onnxruntime
    build offers, always ending with ``CPUExecutionProvider`` as the fallback."""
    wanted = [p.strip() for p in requested.split(",") if p.strip()]
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]
