"""Pure parts of the slide services: format sniffing, tile JPEGs under the budget, tile → slide
coordinates, the merge state codec and the merge handler's idempotency (fake record store)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamdx.schemas import Detection, SlideDetectionsV1, SlideTileV1
from streamdx.slide_records import SlideResult
from streamdx_inference.slides_handler import tile_decode, tile_detections
from streamdx_inference.slides_merge_handler import SlideMergeCodec, SlideMergeHandler, SlideMergeState, TileBoxes
from streamdx_ingest.slide_reader import SlideError, slide_sniff
from streamdx_ingest.slide_tiles import TileTooLarge, tile_jpeg


@pytest.mark.parametrize(("head", "fmt"), [(b"II*\x00abc", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"),
                                           (b"\x89PNG\r\n\x1a\nxx", "png"), (b"\xff\xd8\xff\xe0", "jpeg"),
                                           (b"PK\x03\x04", "zip")])
def test_sniff_formats(head: bytes, fmt: str) -> None:
    assert slide_sniff(head) == fmt


def test_sniff_refuses_empty_and_non_images() -> None:
    with pytest.raises(SlideError) as empty:
        slide_sniff(b"")
    with pytest.raises(SlideError) as text:
        slide_sniff(b"%PDF-1.7")
    assert (empty.value.status, text.value.status) == (422, 415)


def test_tile_jpeg_lowers_quality_to_fit_and_refuses_what_never_fits() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1200, 1600, 3), np.uint8)  # incompressible: the worst case
    q90 = tile_jpeg(noise, max_bytes=10**8, qualities=(90,))
    fitted = tile_jpeg(noise, max_bytes=len(q90) // 2)
    assert len(fitted) <= len(q90) // 2
    decoded = cv2.imdecode(np.frombuffer(fitted, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (1200, 1600, 3)
    with pytest.raises(TileTooLarge):
        tile_jpeg(noise, max_bytes=1000)


def _tile(x: int = 1067, y: int = 800, w: int = 1600, h: int = 1200) -> SlideTileV1:
    img = np.full((h, w, 3), 200, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return SlideTileV1(slide_id="s1", x=x, y=y, width=w, height=h, media_type="image/jpeg",
                       image=base64.b64encode(buf.tobytes()).decode(), tiles_total=2, slide_width=4000,
                       slide_height=3000, mpp=0.5)


def test_tile_detections_are_in_slide_pixels_and_clipped_to_the_tile() -> None:
    tile = _tile()
    assert tile_decode(tile).shape == (1200, 1600, 3)
    msg = tile_detections(tile, [[10, 20, 110, 220], [1500, 1100, 1700, 1300]], [0.9, 1.2], "m")
    assert [(d.x0, d.y0, d.x1, d.y1) for d in msg.detections] == [(1077, 820, 1177, 1020), (2567, 1900, 2667, 2000)]
    assert [d.score for d in msg.detections] == [0.9, 1.0]
    assert (msg.width, msg.height, msg.tiles_total, msg.mpp) == (1600, 1200, 2, 0.5)


def test_tile_decode_rejects_wrong_size() -> None:
    from streamdx.messaging.worker import HandlerRejected

    tile = _tile().model_copy(update={"width": 800})
    with pytest.raises(HandlerRejected, match="tile_size_mismatch"):
        tile_decode(tile)


def test_merge_codec_round_trip_and_rejects_garbage() -> None:
    codec = SlideMergeCodec()
    state = SlideMergeState({"0,0": TileBoxes(1600, 1200, ((1.0, 2.0, 3.0, 4.0),), (0.5,))})
    assert codec.loads(codec.dumps(state)) == state
    with pytest.raises(ValueError):
        codec.loads(b'{"v": 2}')


class FakeRecords:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.results: list[tuple[SlideResult, int]] = []

    async def update(self, slide_id: str, fields: dict[str, Any]) -> None:
        self.updates.append(dict(fields))

    async def get(self, slide_id: str) -> dict[str, str]:
        return {"tissue_area_mm2": "2.0"}

    async def set_result(self, slide_id: str, result: SlideResult, tiles_detected: int) -> None:
        self.results.append((result, tiles_detected))


def _dets(x: int, y: int) -> SlideDetectionsV1:
    box = Detection(x0=x + 600, y0=y + 450, x1=x + 1000, y1=y + 750, score=0.8)
    return SlideDetectionsV1(slide_id="s1", x=x, y=y, width=1600, height=1200, detections=[box], model="m",
                             tiles_total=2, slide_width=2667, slide_height=1200, mpp=0.5)


async def test_merge_handler_is_idempotent_and_finishes_once() -> None:
    records = FakeRecords()
    handler = SlideMergeHandler(records)  # type: ignore[arg-type]
    first = await handler(_dets(0, 0), None)
    again = await handler(_dets(0, 0), first.state)  # redelivered tile: no change
    assert again.state == first.state and records.updates == [{"tiles_detected": 1}]
    done = await handler(_dets(1067, 0), again.state)
    assert done.state is not None and done.state.done and not done.state.tiles
    (result, n), = records.results
    assert n == 2 and result.count == 2 and result.density_per_mm2 == pytest.approx(1.0)
    late = await handler(_dets(1067, 0), done.state)
    assert late.state == done.state and len(records.results) == 1


@pytest.mark.parametrize("fmt", [".png", ".jpg"])
def test_truncated_image_refused_even_when_pillow_is_told_to_load_truncated_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """WeasyPrint (imported by the web console in the same test process) sets Pillow's global
    LOAD_TRUNCATED_IMAGES; a truncated upload must still be a 422."""
    from PIL import ImageFile

    from streamdx_ingest.slide_reader import slide_open

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(fmt, img)
    assert ok
    path = tmp_path / f"cut{fmt}"
    path.write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    with pytest.raises(SlideError) as exc:
        slide_open(path)
    assert exc.value.status == 422 and "truncated" in str(exc.value)
