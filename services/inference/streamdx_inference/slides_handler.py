"""The inference service's slide detector: ``slides.tiles`` → ``slides.detections``, batched.

A :data:`~streamdx.messaging.worker.BatchHandler`: the worker hands it the tiles of a
``getmany`` batch (every slide's), the handler decodes the JPEGs and runs
:meth:`~streamdx_inference.slides.detector.SlideDetector.detect` once over all of them (the
detector splits them into its own ONNX batches), in a thread so the event loop keeps serving
health checks and heartbeats. Each tile yields one :class:`~streamdx.schemas.SlideDetectionsV1`
with its boxes in slide pixels (tile offset added) — also a tile without detections, so the
aggregator can count every tile in. The handler is stateless.

A tile that cannot be decoded, or whose pixels do not match its declared size, raises
``HandlerRejected`` (``tile_undecodable`` / ``tile_size_mismatch``): the worker then retries
per slide and per tile, and only that tile goes to ``slides.tiles.dlq``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from streamdx.messaging.worker import Handled, HandlerRejected, KeyBatch
from streamdx.metrics import InferenceMetrics
from streamdx.schemas import Detection, SlideDetectionsV1, SlideTileV1
from streamdx_inference.slides.detector import SlideDetector

__all__ = ["SlideTilesHandler", "tile_decode", "tile_detections"]

#: ``model`` label of the inference-time histogram.
DETECTOR_METRIC = "slides_detector"


def tile_decode(msg: SlideTileV1) -> npt.NDArray[np.uint8]:
    """The RGB uint8 ``(height, width, 3)`` pixels of a tile message.

    Raises
    ------
    HandlerRejected
        ``tile_undecodable`` (bad base64 or image bytes), ``tile_size_mismatch`` (decoded size
        differs from the message's ``width`` × ``height``).
    """
    try:
        raw = base64.b64decode(msg.image, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HandlerRejected("tile_undecodable", f"image is not base64: {exc}") from exc
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise HandlerRejected("tile_undecodable", f"{msg.media_type} bytes cannot be decoded")
    if bgr.shape[:2] != (msg.height, msg.width):
        raise HandlerRejected("tile_size_mismatch",
                              f"decoded {bgr.shape[1]}×{bgr.shape[0]}, declared {msg.width}×{msg.height}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def tile_detections(
    msg: SlideTileV1, boxes: npt.ArrayLike, scores: npt.ArrayLike, model: str
) -> SlideDetectionsV1:
    """The ``slides.detections`` message of one tile from its boxes in tile pixels.

    Parameters
    ----------
    msg : SlideTileV1
        The tile.
    boxes : array-like, shape (k, 4)
        ``x0, y0, x1, y1`` in tile pixels (clipped to the tile).
    scores : array-like, shape (k,)
        Confidence per box, 0–1.
    model : str
        Detector name.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.clip(np.asarray(scores, np.float64).reshape(-1), 0.0, 1.0)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, msg.width) + msg.x
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, msg.height) + msg.y
    dets = [Detection(x0=float(r[0]), y0=float(r[1]), x1=float(r[2]), y1=float(r[3]), score=float(p))
            for r, p in zip(b, s, strict=True)]
    return SlideDetectionsV1(
        slide_id=msg.slide_id, x=msg.x, y=msg.y, width=msg.width, height=msg.height, detections=dets,
        model=model[:100], tiles_total=msg.tiles_total, slide_width=msg.slide_width,
        slide_height=msg.slide_height, level=msg.level, downsample=msg.downsample, mpp=msg.mpp,
    )


class SlideTilesHandler:
    """Batch handler for ``slides.tiles`` (detector and metrics injected; see the module doc).

    Parameters
    ----------
    detector : SlideDetector
        The loaded ONNX detector.
    metrics : InferenceMetrics or None
        Where each detector call's time is observed.
    """

    def __init__(self, detector: SlideDetector, metrics: InferenceMetrics | None = None) -> None:
        self._detector = detector
        self._metrics = metrics

    def _run(self, msgs: Sequence[SlideTileV1]) -> list[SlideDetectionsV1]:
        tiles = [tile_decode(m) for m in msgs]
        started = time.perf_counter()
        found = self._detector.detect(tiles)
        if self._metrics is not None:
            self._metrics.inference_seconds.labels(model=DETECTOR_METRIC).observe(time.perf_counter() - started)
        name = self._detector.name
        return [tile_detections(m, boxes, scores, name) for m, (boxes, scores) in zip(msgs, found, strict=True)]

    async def __call__(self, batches: Sequence[KeyBatch[SlideTileV1, None]]) -> list[Handled[None]]:
        msgs = [m for kb in batches for m in kb.messages]
        outputs = await asyncio.to_thread(self._run, msgs) if msgs else []
        handled: list[Handled[None]] = []
        i = 0
        for kb in batches:
            handled.append(Handled(None, outputs[i : i + len(kb.messages)]))
            i += len(kb.messages)
        return handled
