"""ESR camera pipeline schemas: frames → boundary heights → 60-minute forecasts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from streamdx.schemas.base import Message
from streamdx.schemas.topics import Topic

__all__ = ["MAX_FRAME_BYTES", "EsrForecastV1", "EsrFrameV1", "EsrHeightV1", "TubeId"]

TubeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
#: Largest encoded frame accepted (bytes of the JPEG/PNG file).
MAX_FRAME_BYTES = 600_000
Sex = Literal["F", "M"]


class _TubeMinute(Message):
    """Fields of every per-tube, per-minute message (key ``tube_id``, idempotency ``tube_id:minute``)."""

    tube_id: TubeId
    minute: int = Field(ge=0, le=120)

    def key(self) -> str:
        return self.tube_id

    def idempotency_key(self) -> str:
        return f"{self.tube_id}:{self.minute}"


class EsrFrameV1(_TubeMinute):
    """One camera frame of one tube at one minute after the tube was filled."""

    TOPIC: ClassVar[str] = Topic.ESR_FRAMES
    VERSION: ClassVar[int] = 1

    captured_at: datetime
    media_type: Literal["image/jpeg", "image/png"]
    image: str = Field(description="base64 of the encoded image file")
    width: int = Field(ge=16, le=8192)
    height: int = Field(ge=16, le=8192)
    age: float = Field(ge=0, le=120)
    sex: Sex
    simulated: bool = False


class EsrHeightV1(_TubeMinute):
    """Plasma / red-cell boundary of one frame, normalised to the first frame's (= 1)."""

    TOPIC: ClassVar[str] = Topic.ESR_HEIGHTS
    VERSION: ClassVar[int] = 1

    boundary_px: float | None = Field(
        description="Boundary row in the frame (pixels, sub-pixel); null when none was found"
    )
    height: float = Field(ge=0, le=1.5, description="Normalised red-cell column height")
    confidence: float = Field(ge=0, le=1)
    age: float = Field(ge=0, le=120)
    sex: Sex
    simulated: bool = False


class EsrForecastV1(_TubeMinute):
    """Forecast of the normalised height at 60 minutes, issued every minute from minute 10
    (``minute`` is the last observed minute used)."""

    TOPIC: ClassVar[str] = Topic.ESR_FORECASTS
    VERSION: ClassVar[int] = 1

    h60: float = Field(description="Forecast normalised height at 60 min")
    h60_low: float
    h60_high: float
    measured_h60: float | None = Field(default=None, description="The measured value once minute 60 exists")
    model: str = Field(max_length=100)
    simulated: bool = False
