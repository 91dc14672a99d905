"""The dsp service's ESR handler: ``esr.frames`` frame + tube tracker state → ``esr.heights``."""

from __future__ import annotations

import base64
import math

import cv2
import numpy as np

from streamdx.messaging.worker import Handled, HandlerRejected
from streamdx.schemas import EsrFrameV1, EsrHeightV1
from streamdx_dsp.esr import EsrTrackerState, Roi, esr_boundary_track, esr_tracker_init

__all__ = ["EsrFramesHandler", "EsrTrackerCodec"]


class EsrTrackerCodec:
    """JSON of the tracker state (the tracker's own ``dumps``/``loads``)."""

    def dumps(self, state: EsrTrackerState) -> bytes:
        return state.dumps().encode()

    def loads(self, blob: bytes) -> EsrTrackerState:
        try:
            return EsrTrackerState.loads(blob)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable ESR tracker state: {exc}") from exc


class EsrFramesHandler:
    """Decode the frame, track the boundary, emit the normalised height of that minute."""

    def __init__(self, roi: Roi | None = None) -> None:
        self._roi = roi

    async def __call__(self, msg: EsrFrameV1, state: EsrTrackerState | None) -> Handled[EsrTrackerState]:
        state = state if state is not None else esr_tracker_init(self._roi)
        if msg.minute in state.heights:
            return Handled(state, [])  # this minute was already measured (redelivery)
        img = cv2.imdecode(np.frombuffer(base64.b64decode(msg.image), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise HandlerRejected("image", "frame does not decode")
        if img.shape[:2] != (msg.height, msg.width):
            raise HandlerRejected(
                "image", f"frame is {img.shape[1]}×{img.shape[0]}, header says {msg.width}×{msg.height}"
            )
        state, res = esr_boundary_track(state, np.asarray(img, dtype=np.uint8), msg.minute)
        height = EsrHeightV1(
            tube_id=msg.tube_id, minute=msg.minute,
            boundary_px=res.boundary_px if math.isfinite(res.boundary_px) else None,
            height=float(np.clip(res.height, 0.0, 1.5)), confidence=float(np.clip(res.confidence, 0.0, 1.0)),
            age=msg.age, sex=msg.sex, simulated=msg.simulated,
        )
        return Handled(state, [height])
