"""Whole-slide image schemas: tiles → glomerulus detections.

Coordinates are pixels of the slide level the tiles were cut from (``level``; 0 = full
resolution); ``downsample`` is that level's size relative to level 0 and ``mpp`` its
resolution in µm per pixel (``None`` when the file does not state one). Every tile and every
detection message carries the slide's geometry, so a consumer needs no other lookup.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamdx.schemas.base import Message
from streamdx.schemas.topics import Topic

__all__ = ["Detection", "SlideDetectionsV1", "SlideTileV1"]

SlideId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class SlideTileV1(Message):
    """One tile of a slide image at full resolution."""

    TOPIC: ClassVar[str] = Topic.SLIDES_TILES
    VERSION: ClassVar[int] = 1

    slide_id: SlideId
    x: int = Field(ge=0, description="Left edge in slide pixels")
    y: int = Field(ge=0, description="Top edge in slide pixels")
    width: int = Field(ge=1, le=4096)
    height: int = Field(ge=1, le=4096)
    media_type: Literal["image/jpeg", "image/png"]
    image: str = Field(description="base64 of the encoded tile")
    tiles_total: int = Field(ge=1, description="Tiles of the slide published in all (its tissue tiles)")
    slide_width: int = Field(ge=1, description="Width of the slide level in pixels")
    slide_height: int = Field(ge=1, description="Height of the slide level in pixels")
    level: int = Field(default=0, ge=0, description="Slide level the tiles were cut from (0 = full resolution)")
    downsample: float = Field(default=1.0, ge=1.0, description="Level size relative to level 0")
    mpp: float | None = Field(default=None, gt=0, description="µm per pixel of the level, if known")

    def key(self) -> str:
        return self.slide_id

    def idempotency_key(self) -> str:
        return f"{self.slide_id}:{self.x}:{self.y}"


class Detection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = Field(ge=0, le=1)
    label: str = "glomerulus"


class SlideDetectionsV1(Message):
    """Detections of one tile, in slide pixel coordinates."""

    TOPIC: ClassVar[str] = Topic.SLIDES_DETECTIONS
    VERSION: ClassVar[int] = 1

    slide_id: SlideId
    x: int = Field(ge=0, description="Left edge of the tile in slide pixels")
    y: int = Field(ge=0, description="Top edge of the tile in slide pixels")
    width: int = Field(ge=1, le=4096, description="Tile width in pixels")
    height: int = Field(ge=1, le=4096, description="Tile height in pixels")
    detections: list[Detection]
    model: str = Field(max_length=100)
    tiles_total: int = Field(ge=1, description="Tiles of the slide in all (copied from the tile)")
    slide_width: int = Field(ge=1)
    slide_height: int = Field(ge=1)
    level: int = Field(default=0, ge=0)
    downsample: float = Field(default=1.0, ge=1.0)
    mpp: float | None = Field(default=None, gt=0)

    def key(self) -> str:
        return self.slide_id

    def idempotency_key(self) -> str:
        return f"{self.slide_id}:{self.x}:{self.y}"
