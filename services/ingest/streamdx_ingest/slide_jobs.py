"""The background tiling job of an uploaded slide: full-resolution tiles → ``slides.tiles``.

For each tile of the grid (1600 × 1200, 1/3 overlap by default) the job reads the region of the
chosen level, keeps it when the tissue rule says it holds tissue, and encodes it as JPEG under
the byte budget into a spool file beside the upload. Once every tissue tile is known (their count
is ``tiles_total`` in every message) it publishes them in batches, waiting for the broker's
acknowledgement, and counts them in the slide's record. The upload and the spool file are
removed when the job ends, whatever happens.

Status: ``uploaded`` → ``tiling`` → ``detecting`` (compare-and-set: the aggregator may already
have written ``done``) or ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamdx.logs import log_fields
from streamdx.messaging.errors import Backpressure, BrokerUnavailable
from streamdx.messaging.publisher import Publisher
from streamdx.schemas import SlideTileV1
from streamdx.slide_records import SlideRecords
from streamdx_inference.slides.tiling import is_tissue_tile, tile_grid
from streamdx_ingest.background import BackgroundJobs
from streamdx_ingest.slide_reader import SlideSource, remove_quietly
from streamdx_ingest.slide_tiles import tile_jpeg

__all__ = ["SlideJobs", "TilingConfig"]

log = logging.getLogger("streamdx.ingest.slides")
_PUBLISH_ATTEMPTS = 60


@dataclass(frozen=True, slots=True)
class TilingConfig:
    """Tile size and overlap (level pixels, fraction), tissue rule threshold, JPEG byte budget,
    tiles per broker batch and reader threads."""

    tile_w: int = 1600
    tile_h: int = 1200
    overlap: float = 1 / 3
    min_tissue: float = 0.02
    max_tile_bytes: int = 700_000
    publish_batch: int = 16
    threads: int = 2


@dataclass(frozen=True, slots=True)
class _Tile:
    x: int
    y: int
    w: int
    h: int
    offset: int
    length: int


class SlideJobs:
    """Runs tiling jobs as background tasks; stops them cleanly on shutdown."""

    def __init__(self, publisher: Publisher, records: SlideRecords, config: TilingConfig) -> None:
        self._publisher = publisher
        self._records = records
        self._config = config
        self._jobs = BackgroundJobs()

    def start(self, slide_id: str, source: SlideSource, spool: Path, cleanup: Sequence[Path]) -> None:
        """Tile ``source`` in the background; ``cleanup`` (upload, unpacked zip) is removed at the end."""
        self._jobs.start(slide_id, self._run(slide_id, source, spool, tuple(cleanup)), name=f"slide-{slide_id}")

    async def wait(self, slide_id: str) -> None:
        """Wait for the job of ``slide_id`` (no-op when none runs)."""
        await self._jobs.wait(slide_id)

    async def shutdown(self) -> None:
        """Cancel every job (each marks its slide failed and removes its files)."""
        await self._jobs.shutdown()

    async def _run(self, slide_id: str, source: SlideSource, spool: Path, cleanup: tuple[Path, ...]) -> None:
        tiles_file = spool / f"{slide_id}.tiles"
        try:
            await self._records.advance(slide_id, "uploaded", "tiling")
            tiles = await self._cut(source, tiles_file)
            if not tiles:
                raise _JobError("no tile holds tissue: the slide is blank at full resolution")
            await self._records.update(slide_id, {"tiles_total": len(tiles)})
            await self._publish(slide_id, source, tiles, tiles_file)
            await self._records.advance(slide_id, "tiling", "detecting")
            log.info("slide tiled", extra=log_fields(slide_id=slide_id, tiles=len(tiles)))
        except asyncio.CancelledError:
            await self._fail(slide_id, "ingest stopped while tiling; upload the slide again")
            raise
        except _JobError as exc:
            await self._fail(slide_id, str(exc))
        except Exception as exc:
            log.exception("slide tiling failed", extra=log_fields(slide_id=slide_id))
            await self._fail(slide_id, f"tiling failed: {type(exc).__name__}: {exc}"[:300])
        finally:
            await asyncio.to_thread(source.close)
            remove_quietly(tiles_file, *cleanup)

    async def _fail(self, slide_id: str, error: str) -> None:
        try:
            await self._records.update(slide_id, {"status": "failed", "error": error})
        except Exception:  # Redis down: the record keeps its last status
            log.exception("could not record the failure", extra=log_fields(slide_id=slide_id))

    async def _cut(self, source: SlideSource, tiles_file: Path) -> list[_Tile]:
        """Read every grid tile, keep the tissue ones as JPEGs in ``tiles_file``."""
        c = self._config
        grid = tile_grid(source.width, source.height, tile_w=c.tile_w, tile_h=c.tile_h, overlap=c.overlap)
        sem = asyncio.Semaphore(max(1, c.threads))

        def encode(x: int, y: int, w: int, h: int) -> bytes | None:
            tile = source.read(x, y, w, h)
            if not is_tissue_tile(tile, c.min_tissue):
                return None
            return tile_jpeg(tile, max_bytes=c.max_tile_bytes)

        async def one(box: tuple[int, int, int, int]) -> bytes | None:
            async with sem:
                return await asyncio.to_thread(encode, *box)

        kept: list[_Tile] = []
        offset = 0
        with tiles_file.open("wb") as out:
            window = max(1, c.threads) * 4  # bounded look-ahead: memory stays a few tiles
            for start in range(0, len(grid), window):
                boxes = grid[start : start + window]
                for box, data in zip(boxes, await asyncio.gather(*(one(b) for b in boxes)), strict=True):
                    if data is None:
                        continue
                    out.write(data)
                    kept.append(_Tile(*box, offset, len(data)))
                    offset += len(data)
        return kept

    async def _publish(self, slide_id: str, source: SlideSource, tiles: list[_Tile], tiles_file: Path) -> None:
        total = len(tiles)
        with tiles_file.open("rb") as f:
            for start in range(0, total, self._config.publish_batch):
                msgs = []
                for t in tiles[start : start + self._config.publish_batch]:
                    f.seek(t.offset)
                    data = f.read(t.length)
                    msgs.append(SlideTileV1(
                        slide_id=slide_id, x=t.x, y=t.y, width=t.w, height=t.h, media_type="image/jpeg",
                        image=base64.b64encode(data).decode("ascii"), tiles_total=total,
                        slide_width=source.width, slide_height=source.height, level=source.level,
                        downsample=source.downsample, mpp=source.mpp,
                    ))
                await self._publish_with_retry(msgs)
                await self._records.update(slide_id, {"tiles_published": start + len(msgs)})

    async def _publish_with_retry(self, msgs: list[SlideTileV1]) -> None:
        delay = 0.2
        for _attempt in range(_PUBLISH_ATTEMPTS):
            try:
                await self._publisher.publish_many(msgs)
                return
            except (BrokerUnavailable, Backpressure):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise _JobError(f"the broker did not take the tiles after {_PUBLISH_ATTEMPTS} attempts")


class _JobError(RuntimeError):
    """A tiling failure whose message is shown as is."""
