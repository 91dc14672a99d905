"""Settings of the dsp service."""

from __future__ import annotations

from pydantic import Field

from streamdx.settings import ServiceSettings

__all__ = ["DspSettings"]


class DspSettings(ServiceSettings):
    dsp_group: str = Field(default="dsp", description="Consumer group of the ECG worker")
    dsp_esr_group: str = Field(default="dsp-esr", description="Consumer group of the ESR boundary worker")
