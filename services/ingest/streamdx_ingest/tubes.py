"""ESR tubes and camera frames: registration, frame validation, publication to ``esr.frames``.

A tube is registered once with the patient's age and sex (needed by the forecast model; never
logged). Each frame is published exactly once per minute through the same sequencer as ECG
chunks (the minute is the sequence number), so a repeated minute is refused with 409 and a
frame is acknowledged only after the broker acknowledged it.

Layout: ``sdx:tube:{tube_id}`` hash — device_id, age, sex, width, height, created.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from streamdx.messaging.publisher import Publisher
from streamdx.schemas import EsrFrameV1
from streamdx.schemas.esr import MAX_FRAME_BYTES, TubeId
from streamdx_ingest.sequencer import Sequencer

__all__ = ["FrameError", "TubeConflict", "TubeIn", "TubeRegistry", "TubeUnknown", "frame_inspect"]

#: The sequencer compares "fs" across a stream; frames of a tube all use this rate (1/min).
FRAME_RATE = 1.0 / 60.0


class TubeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tube_id: TubeId
    age: float = Field(ge=0, le=120, allow_inf_nan=False, description="Patient age (years)")
    sex: Literal["F", "M"]
    simulated: bool = Field(default=False, description="Frames come from the sedimentation simulator")


class FrameError(ValueError):
    """Not an image, wrong size, too large (HTTP 422/413)."""


class TubeUnknown(LookupError):
    """No such tube (HTTP 404)."""


class TubeConflict(ValueError):
    """Registration differs from the existing one, or a minute repeats (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class FrameInfo:
    media_type: Literal["image/jpeg", "image/png"]
    width: int
    height: int


def frame_inspect(data: bytes) -> FrameInfo:
    """Check that ``data`` is a JPEG or PNG camera frame that decodes; return its type and size."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    if data[:3] == b"\xff\xd8\xff":
        media: Literal["image/jpeg", "image/png"] = "image/jpeg"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        media = "image/png"
    else:
        raise FrameError("not a JPEG or PNG image")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FrameError("image does not decode")
    h, w = img.shape[:2]
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise FrameError(f"frame of {w}×{h} px is outside 16–8192 px")
    return FrameInfo(media, int(w), int(h))


class TubeRegistry:
    """Tubes in Redis; frames published once per minute (dependencies injected)."""

    def __init__(self, redis: Redis, publisher: Publisher, sequencer: Sequencer, lock_wait_s: float) -> None:
        self._redis = redis
        self._publisher = publisher
        self._sequencer = sequencer
        self._lock_wait_s = lock_wait_s

    async def register(self, device_id: str, tube: TubeIn) -> bool:
        """Register ``tube``; ``True`` if new, ``False`` if the same registration exists."""
        key = f"sdx:tube:{tube.tube_id}"
        created = await self._redis.hsetnx(key, "device_id", device_id)
        if created:
            await self._redis.hset(key, mapping={"age": repr(tube.age), "sex": tube.sex, "created": time.time(),
                                                 "simulated": int(tube.simulated)})
            return True
        info = await self._info(tube.tube_id)
        if info.get("device_id") != device_id or float(info.get("age", "nan")) != tube.age or \
                info.get("sex") != tube.sex or info.get("simulated") != str(int(tube.simulated)):
            raise TubeConflict("tube already registered with other data")
        return False

    async def _info(self, tube_id: str) -> dict[str, str]:
        raw = await self._redis.hgetall(f"sdx:tube:{tube_id}")
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}

    async def add_frame(self, device_id: str, tube_id: str, minute: int, data: bytes,
                        captured_at: datetime | None) -> EsrFrameV1:
        """Validate and publish one frame; raise on unknown tube, bad image or repeated minute."""
        info = await self._info(tube_id)
        if not info or info.get("device_id") != device_id:
            raise TubeUnknown(f"no tube {tube_id} for this device")
        frame = frame_inspect(data)
        if "width" in info and (int(info["width"]), int(info["height"])) != (frame.width, frame.height):
            raise FrameError(f"frame is {frame.width}×{frame.height} px, this tube's frames are "
                             f"{info['width']}×{info['height']} px")
        msg = EsrFrameV1(
            tube_id=tube_id, minute=minute, captured_at=captured_at or datetime.now(UTC),
            media_type=frame.media_type, image=base64.b64encode(data).decode(), width=frame.width,
            height=frame.height, age=float(info["age"]), sex=info["sex"],  # type: ignore[arg-type]
            simulated=info.get("simulated") == "1",
        )
        stream = f"tube:{tube_id}"
        res = await self._sequencer.begin(stream, [minute], FRAME_RATE, self._lock_wait_s)
        try:
            decision = res.decisions[0]
            if decision.kind == "duplicate":
                raise TubeConflict(f"minute {minute} of tube {tube_id} was already received")
            if decision.kind != "new":
                raise TubeConflict(f"minute {minute}: {decision.detail}")
            await self._publisher.publish(msg)
        except BaseException:
            await self._sequencer.abort(res)
            raise
        await self._sequencer.commit(res, [minute], FRAME_RATE, 1, decision.gap_before,
                                     msg.captured_at.timestamp() + 60.0)
        if "width" not in info:
            await self._redis.hset(f"sdx:tube:{tube_id}", mapping={"width": frame.width, "height": frame.height})
        return msg
