"""The Redis record of an uploaded slide: status, progress and merged result.

Written by ingest (upload, tiling progress) and by the inference service's per-slide
aggregator (tiles detected, the merged result); read by ingest's ``GET /v1/slides/{id}``.
Layout::

    sdx:slide:{slide_id}          hash    owner, status, filename, format, width, height, level,
                                          downsample, mpp, tissue_area_mm2, tiles_total,
                                          tiles_published, tiles_detected, error, created_at
    sdx:slide:{slide_id}:result   string  JSON of :class:`SlideResult`

Status moves ``uploaded`` → ``tiling`` → ``detecting`` → ``done`` (or ``failed``). Only the
aggregator writes ``done``; ingest moves a status forward only from the one it expects
(compare-and-set), so a result that arrives before ingest has recorded the end of its tiling
is never overwritten. Both keys expire :data:`SLIDE_TTL_S` after their last write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis

__all__ = ["SLIDE_TTL_S", "SlideRecords", "SlideResult", "SlideState"]

SlideState = Literal["uploaded", "tiling", "detecting", "done", "failed"]
#: Lifetime of a slide's record and result after their last write (s).
SLIDE_TTL_S = 7 * 24 * 3600

_CAS = """
if redis.call('hget', KEYS[1], 'status') == ARGV[1] then
  redis.call('hset', KEYS[1], 'status', ARGV[2])
  return 1
end
return 0
"""


class SlideResult(BaseModel):
    """The merged detections of a whole slide.

    Boxes are ``[x0, y0, x1, y1]`` in pixels of the slide level that was tiled.
    ``density_per_mm2`` is ``count`` over the slide's tissue area (tissue fraction of the
    whole-slide thumbnail × slide area), ``None`` when the slide states no resolution.
    """

    boxes: list[list[float]]
    scores: list[float]
    count: int = Field(ge=0)
    density_per_mm2: float | None = None
    tissue_area_mm2: float | None = None
    model: str = ""


class SlideRecords:
    """Slide records in Redis (the client is injected)."""

    def __init__(self, redis: Redis, ttl_s: int = SLIDE_TTL_S) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @staticmethod
    def key(slide_id: str) -> str:
        """Redis key of the record hash."""
        return f"sdx:slide:{slide_id}"

    @staticmethod
    def result_key(slide_id: str) -> str:
        """Redis key of the result JSON."""
        return f"sdx:slide:{slide_id}:result"

    async def create(self, slide_id: str, fields: Mapping[str, str | int | float]) -> None:
        """Write a new record (``status`` = ``uploaded`` unless given)."""
        mapping = {"status": "uploaded", "tiles_total": 0, "tiles_published": 0, "tiles_detected": 0,
                   "error": "", **fields}
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.key(slide_id), mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(self.key(slide_id), self._ttl_s)
        await pipe.execute()

    async def update(self, slide_id: str, fields: Mapping[str, str | int | float]) -> None:
        """Set fields of an existing record."""
        await self._redis.hset(self.key(slide_id), mapping=dict(fields))  # type: ignore[arg-type]

    async def advance(self, slide_id: str, expected: SlideState, new: SlideState) -> bool:
        """Set ``status`` to ``new`` only if it is ``expected``; return whether it was set."""
        done = await self._redis.eval(_CAS, 1, self.key(slide_id), expected, new)
        return bool(done)

    async def get(self, slide_id: str) -> dict[str, str] | None:
        """The record's fields as strings, or ``None`` when there is none."""
        raw = await self._redis.hgetall(self.key(slide_id))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def set_result(self, slide_id: str, result: SlideResult, tiles_detected: int) -> None:
        """Store the merged result and mark the slide ``done`` (one transaction)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self.result_key(slide_id), result.model_dump_json(), ex=self._ttl_s)
        pipe.hset(self.key(slide_id), mapping={"status": "done", "tiles_detected": tiles_detected})
        pipe.expire(self.key(slide_id), self._ttl_s)
        await pipe.execute()

    async def get_result(self, slide_id: str) -> SlideResult | None:
        """The merged result, or ``None`` before the slide is done."""
        raw = await self._redis.get(self.result_key(slide_id))
        return SlideResult.model_validate_json(raw) if raw else None

    async def delete(self, slide_id: str) -> None:
        """Remove the record and its result."""
        await self._redis.delete(self.key(slide_id), self.result_key(slide_id))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
