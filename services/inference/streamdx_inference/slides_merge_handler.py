"""The per-slide aggregator: ``slides.detections`` → the merged result of the slide in Redis.

Keyed by ``slide_id`` (so one consumer owns a slide), its state is the set of tiles seen with
their boxes (tile pixels) — idempotent on the tile's ``(x, y)``: a redelivered tile changes
nothing. When ``tiles_total`` tiles are in, it merges them with
:func:`~streamdx_inference.slides.merge.merge_tiles` (edge-cut boxes dropped where another tile
holds the object whole, then weighted box fusion: each glomerulus once), writes a
:class:`~streamdx.slide_records.SlideResult` to the slide's record (status ``done``) and keeps
only ``done`` in its state, so a late duplicate does not merge again. Progress
(``tiles_detected``) is written as tiles arrive.

Density is ``count`` / tissue area (mm²), the area ingest measured on the slide's thumbnail
(record field ``tissue_area_mm2``); ``None`` when the slide has no resolution.

Redis is retried (exponential back-off, up to :data:`REDIS_RETRY_S`) rather than failing the
message: a Redis outage must not dead-letter a good tile.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from streamdx.messaging.worker import Handled
from streamdx.schemas import SlideDetectionsV1
from streamdx.slide_records import SlideRecords, SlideResult
from streamdx_inference.slides.merge import merge_tiles

__all__ = ["REDIS_RETRY_S", "SlideMergeCodec", "SlideMergeHandler", "SlideMergeState", "TileBoxes"]

#: How long a Redis write is retried before the message is given up (s).
REDIS_RETRY_S = 120.0


@dataclass(frozen=True, slots=True)
class TileBoxes:
    """One tile's size and detections in tile pixels."""

    w: int
    h: int
    boxes: tuple[tuple[float, float, float, float], ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class SlideMergeState:
    """Tiles seen so far, by ``"x,y"``; ``done`` once the result was written (tiles then dropped)."""

    tiles: dict[str, TileBoxes] = field(default_factory=dict)
    done: bool = False


class SlideMergeCodec:
    """``v1``: JSON ``{"v", "done", "tiles": {"x,y": [w, h, boxes, scores]}}``, validated on load."""

    VERSION = 1

    def dumps(self, state: SlideMergeState) -> bytes:
        """Serialise ``state``."""
        tiles = {k: [t.w, t.h, [list(b) for b in t.boxes], list(t.scores)] for k, t in state.tiles.items()}
        return json.dumps({"v": self.VERSION, "done": state.done, "tiles": tiles}, separators=(",", ":")).encode()

    def loads(self, blob: bytes) -> SlideMergeState:
        """Deserialise a checkpoint.

        Raises
        ------
        ValueError
            On another version or malformed content (the worker then starts the slide afresh).
        """
        try:
            d = json.loads(blob)
            if not isinstance(d, dict) or d.get("v") != self.VERSION:
                raise ValueError("not a v1 slide merge state")
            tiles = {
                str(k): TileBoxes(int(w), int(h), tuple((float(a), float(b), float(c), float(e)) for a, b, c, e in bx),
                                  tuple(float(s) for s in sc))
                for k, (w, h, bx, sc) in d["tiles"].items()
            }
            return SlideMergeState(tiles, bool(d["done"]))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"slide merge state: {exc}") from exc


def _tile_boxes(msg: SlideDetectionsV1) -> TileBoxes:
    boxes = tuple((d.x0 - msg.x, d.y0 - msg.y, d.x1 - msg.x, d.y1 - msg.y) for d in msg.detections)
    return TileBoxes(msg.width, msg.height, boxes, tuple(d.score for d in msg.detections))


def slide_merge(state: SlideMergeState, slide_w: int, slide_h: int, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge every tile of ``state`` into slide boxes ``(n, 4)`` and scores ``(n,)``."""
    results: list[tuple[Any, ...]] = []
    for key, t in state.tiles.items():
        x, y = (int(v) for v in key.split(","))
        results.append((x, y, t.w, t.h, np.asarray(t.boxes, np.float64).reshape(-1, 4),
                        np.asarray(t.scores, np.float64).reshape(-1)))
    boxes, scores = merge_tiles(results, slide_w=slide_w, slide_h=slide_h, iou=iou)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)


class SlideMergeHandler:
    """Per-record handler for ``slides.detections`` (see the module doc).

    Parameters
    ----------
    records : SlideRecords
        The slides' records in Redis.
    iou : float
        IoU of the cross-tile fusion.
    """

    def __init__(self, records: SlideRecords, iou: float = 0.5) -> None:
        self._records = records
        self._iou = iou

    async def _redis(self, op: Any) -> Any:
        retrying = AsyncRetrying(retry=retry_if_exception_type((RedisError, OSError)),
                                 wait=wait_exponential(multiplier=0.2, min=0.2, max=5.0),
                                 stop=stop_after_delay(REDIS_RETRY_S), reraise=True)
        return await retrying(op)

    async def __call__(self, msg: SlideDetectionsV1, state: SlideMergeState | None) -> Handled[SlideMergeState]:
        state = state or SlideMergeState()
        key = f"{msg.x},{msg.y}"
        if state.done or key in state.tiles:
            return Handled(state, [])  # late duplicate or redelivery
        tiles = {**state.tiles, key: _tile_boxes(msg)}  # a new state: the given one is never mutated
        new = SlideMergeState(tiles)
        seen = len(tiles)
        if seen < msg.tiles_total:
            async def progress() -> None:
                await self._records.update(msg.slide_id, {"tiles_detected": seen})

            await self._redis(progress)
            return Handled(new, [])
        boxes, scores = await asyncio.to_thread(slide_merge, new, msg.slide_width, msg.slide_height, self._iou)

        async def finish() -> None:
            rec = await self._records.get(msg.slide_id) or {}
            area = float(rec["tissue_area_mm2"]) if rec.get("tissue_area_mm2") else None
            count = len(scores)
            result = SlideResult(
                boxes=[[round(float(v), 2) for v in b] for b in boxes], scores=[round(float(s), 4) for s in scores],
                count=count, density_per_mm2=count / area if area and msg.mpp is not None else None,
                tissue_area_mm2=area if msg.mpp is not None else None, model=msg.model,
            )
            await self._records.set_result(msg.slide_id, result, seen)

        await self._redis(finish)
        return Handled(SlideMergeState({}, done=True), [])
