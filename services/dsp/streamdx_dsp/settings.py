"""Settings of the dsp service."""

from __future__ import annotations

from pydantic import Field

from streamdx.settings import WorkerSettings
from streamdx_dsp.core.segmentation import BeatWindow
from streamdx_dsp.core.stream import DEFAULT_WINDOW

__all__ = ["DspSettings"]


class DspSettings(WorkerSettings):
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics")
    dsp_group: str = Field(default="dsp", description="Consumer group of the ECG worker")
    dsp_esr_group: str = Field(default="dsp-esr", description="Consumer group of the ESR boundary worker")
    dsp_beat_window: BeatWindow = Field(
        default=DEFAULT_WINDOW,
        description="Beat window: fixed (0.28 s before / 0.56 s after R; beats leave ~0.6 s after their R) or rr "
        "(R-RR_prev/3 .. R+2RR_next/3; beats wait for the next R); the ECG models must be trained on the same window",
    )
