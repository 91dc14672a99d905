"""Whole slides on the real broker and Redis: upload to ingest → tissue tiles on ``slides.tiles`` →
ONNX detector → ``slides.detections`` → per-slide merge → the result via ``GET /v1/slides/{id}``
and its QuPath GeoJSON; and every bad upload refused with a clear 4xx leaving nothing behind.

The detector is a tiny ONNX graph in the YOLOv8 layout built by the test
(:func:`~streamdx_inference.slides_bench.write_constant_detector`, 160 × 120 input): it reports
one 400 × 300 px box in the middle of every 1600 × 1200 tile with a score proportional to the
tile's mean intensity, so the expected
result is computable from the same pure functions the services use (tile grid, tissue rule,
merge) — this tests the plumbing; detection quality is measured by ``streamdx eval slides``.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import InferenceMetrics
from streamdx.schemas import SlideDetectionsV1, SlideTileV1
from streamdx.worker_service import WorkerRuntime
from streamdx_inference.main import build_slides_workers
from streamdx_inference.settings import InferenceSettings
from streamdx_inference.slides.merge import merge_tiles
from streamdx_inference.slides.pyramid import write_pyramidal_tiff
from streamdx_inference.slides.render import render_slide
from streamdx_inference.slides.tiling import is_tissue_tile, tile_grid
from streamdx_inference.slides_bench import write_constant_detector
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import running_workers, serve_ingest
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration

UPLOAD_LIMIT = 32 * 1024 * 1024


@dataclass
class Pipeline:
    base: str
    spool: Path
    redis: Redis
    device_key: str
    other_key: str


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_constant_detector(tmp_path_factory.mktemp("tiny_slides_model"))


@pytest.fixture(scope="module")
async def pipeline(stack: StackInfo, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Pipeline]:
    tag = uuid.uuid4().hex[:6]
    spool = tmp_path_factory.mktemp("slides_spool")
    inf = InferenceSettings(
        kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, batch_timeout_ms=50,
        inference_slides_group=f"inf-slides-{tag}", inference_slides_merge_group=f"inf-slides-merge-{tag}",
        slides_model_dir=model_dir,
    )

    def build(rt: WorkerRuntime[InferenceMetrics]) -> list[StreamWorker[Any, Any]]:
        return build_slides_workers(rt, inf, ["CPUExecutionProvider"])

    settings = settings_for(stack, slides_spool_dir=spool, slides_max_upload_bytes=UPLOAD_LIMIT)
    redis = Redis.from_url(stack.redis_url)
    async with running_workers(stack, InferenceMetrics(CollectorRegistry()), build) as workers, \
            serve_ingest(settings) as base:
        assert [w.topic for w in workers] == ["slides.tiles", "slides.detections"]
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            keys = []
            for _ in range(2):
                r = await c.post("/v1/admin/devices", json={"device_id": f"scanner-{uuid.uuid4().hex[:6]}"})
                keys.append(r.json()["api_key"])
        yield Pipeline(base, spool, redis, *keys)
    await redis.aclose()


@pytest.fixture(scope="module")
def slide_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("slides")
    g = render_slide(4000, 3000, seed=3)
    tif = d / "slide.tif"
    write_pyramidal_tiff(tif, g.image, g.mpp, compression="deflate")  # lossless: tiles equal the image
    png = d / "slide.png"
    cv2.imwrite(str(png), cv2.cvtColor(g.image[:2000, :2600], cv2.COLOR_RGB2BGR))
    yield {"image": g.image, "mpp": g.mpp, "tif": tif, "png": png}


def expected_tiles(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    h, w = image.shape[:2]
    return [(x, y, tw, th) for x, y, tw, th in tile_grid(w, h)
            if is_tissue_tile(image[y : y + th, x : x + tw])]


async def slide_keys(redis: Redis) -> set[bytes]:
    return {k async for k in redis.scan_iter(match="sdx:slide:*")}


async def wait_done(c: httpx.AsyncClient, url: str, timeout_s: float = 90.0) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(int(timeout_s / 0.25)):
        body = (await c.get(url)).json()
        if body["status"] in ("done", "failed"):
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"slide not done in {timeout_s} s: {body}")


async def test_pyramidal_tiff_to_merged_result(pipeline: Pipeline, slide_files: dict[str, Any],
                                               stack: StackInfo) -> None:
    image, mpp = slide_files["image"], slide_files["mpp"]
    auth = {"Authorization": f"Bearer {pipeline.device_key}"}
    async with httpx.AsyncClient(base_url=pipeline.base, headers=auth, timeout=60) as c:
        with slide_files["tif"].open("rb") as f:
            r = await c.post("/v1/slides", files={"file": ("biopsy.tif", f, "image/tiff")})
        assert r.status_code == 202, r.text
        up = r.json()
        assert up["status"] in ("uploaded", "tiling") and (up["width"], up["height"]) == (4000, 3000)
        assert up["mpp"] == pytest.approx(mpp) and up["level"] == 0 and up["filename"] == "biopsy.tif"
        done = await wait_done(c, up["status_url"])
        geo = (await c.get(up["geojson_url"])).json()
        other = await c.get(up["status_url"], headers={"Authorization": f"Bearer {pipeline.other_key}"})
    assert done["status"] == "done", done
    tiles = expected_tiles(image)
    assert done["tiles_total"] == done["tiles_published"] == done["tiles_detected"] == len(tiles) > 0
    # every tissue tile went through the broker once, as a JPEG under the byte budget
    published = await read_messages(stack.kafka_bootstrap, SlideTileV1, up["slide_id"])
    assert sorted((t.x, t.y, t.width, t.height) for t in published) == sorted(tiles)
    assert all(t.tiles_total == len(tiles) and len(base64.b64decode(t.image)) <= 700_000 for t in published)
    dets = await read_messages(stack.kafka_bootstrap, SlideDetectionsV1, up["slide_id"])
    assert len(dets) == len(tiles) and {d.model for d in dets} == {"constant-yolov8"}
    # the merged result is A's merge of the per-tile boxes: one 400 × 300 box in the middle of each tile
    per_tile = [(t[0], t[1], t[2], t[3], np.array([[600.0, 450.0, 1000.0, 750.0]]), np.array([0.5]))
                for t in tiles]
    want_boxes, _ = merge_tiles(per_tile, slide_w=4000, slide_h=3000)
    result = done["result"]
    assert result["count"] == len(want_boxes) == len(result["boxes"]) == len(result["scores"])
    got = np.asarray(sorted(result["boxes"]))
    np.testing.assert_allclose(got, np.asarray(sorted(np.asarray(want_boxes).tolist())), atol=2.0)
    assert all(0.25 <= s <= 0.9 for s in result["scores"])
    assert result["tissue_area_mm2"] > 0
    assert result["density_per_mm2"] == pytest.approx(result["count"] / result["tissue_area_mm2"])
    # QuPath GeoJSON: one classified rectangle per glomerulus, level-0 pixels
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == result["count"]
    f0 = geo["features"][0]
    assert f0["geometry"]["type"] == "Polygon" and f0["properties"]["classification"]["name"] == "Glomerulus"
    ring = np.asarray(f0["geometry"]["coordinates"][0])
    assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()
    # another device does not see the slide; nothing is left in the spool folder
    assert other.status_code == 404
    assert list(pipeline.spool.iterdir()) == []


async def test_png_with_admin_token_and_mpp_field(pipeline: Pipeline, slide_files: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=pipeline.base, headers={"Authorization": f"Bearer {ADMIN}"},
                                 timeout=60) as c:
        with slide_files["png"].open("rb") as f:
            r = await c.post("/v1/slides", files={"file": ("crop.png", f, "image/png")}, data={"mpp": "0.5"})
        assert r.status_code == 202, r.text
        done = await wait_done(c, r.json()["status_url"])
    assert done["status"] == "done" and done["mpp"] == 0.5 and (done["width"], done["height"]) == (2600, 2000)
    assert done["tiles_total"] == len(expected_tiles(slide_files["image"][:2000, :2600]))
    assert done["result"]["density_per_mm2"] is not None


def truncated(path: Path, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: len(data) * 2 // 3])
    return out


@pytest.mark.parametrize("case", ["text", "empty", "truncated_tiff", "truncated_png", "blank", "absent_level",
                                  "zip_without_slide"])
async def test_bad_slide_is_refused_and_leaves_nothing(
    case: str, pipeline: Pipeline, slide_files: dict[str, Any], tmp_path: Path
) -> None:
    import zipfile

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((3000, 4000, 3), 245, np.uint8))
    zipped = tmp_path / "notes.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("notes.txt", "no slide here")
    cases: dict[str, tuple[Path, dict[str, str], int, str]] = {
        "text": (tmp_path / "report.svs", {}, 415, "not a slide image"),
        "empty": (tmp_path / "empty.tif", {}, 422, "empty"),
        "truncated_tiff": (truncated(slide_files["tif"], tmp_path / "cut.tif"), {}, 422, "truncated"),
        "truncated_png": (truncated(slide_files["png"], tmp_path / "cut.png"), {}, 422, "truncated"),
        "blank": (blank, {}, 422, "blank"),
        "absent_level": (slide_files["tif"], {"level": "7"}, 422, "level 7 does not exist"),
        "zip_without_slide": (zipped, {}, 422, ".mrxs"),
    }
    (tmp_path / "report.svs").write_text("this is a pathology report, not a slide\n" * 50)
    (tmp_path / "empty.tif").write_bytes(b"")
    path, form, status, words = cases[case]
    before = await slide_keys(pipeline.redis)
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=60,
                                 headers={"Authorization": f"Bearer {pipeline.device_key}"}) as c:
        with path.open("rb") as f:
            r = await c.post("/v1/slides", files={"file": (path.name, f, "application/octet-stream")}, data=form)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert await slide_keys(pipeline.redis) == before
    assert list(pipeline.spool.iterdir()) == []


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversize_upload_is_413_and_leaves_nothing(pipeline: Pipeline, chunked: bool) -> None:
    size = UPLOAD_LIMIT + 256 * 1024
    boundary = "slideboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.tif\"\r\n"
            "Content-Type: image/tiff\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head + b"II*\x00"
        block = b"\x00" * (1 << 20)
        for i in range(0, size, len(block)):
            yield block[: min(len(block), size - i)]
        yield tail

    before = await slide_keys(pipeline.redis)
    headers = {"Authorization": f"Bearer {pipeline.device_key}",
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=60) as c:
        if chunked:
            r = await c.post("/v1/slides", content=body(), headers=headers)
        else:
            data = b"".join([chunk async for chunk in body()])
            r = await c.post("/v1/slides", content=data, headers=headers)
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["detail"]
    assert await slide_keys(pipeline.redis) == before
    assert list(pipeline.spool.iterdir()) == []


async def test_auth_and_form_errors(pipeline: Pipeline, slide_files: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=30) as c:
        with slide_files["png"].open("rb") as f:
            anonymous = await c.post("/v1/slides", files={"file": ("a.png", f)})
        json_body = await c.post("/v1/slides", json={"file": "x"},
                                 headers={"Authorization": f"Bearer {pipeline.device_key}"})
        with slide_files["png"].open("rb") as f:
            bad_level = await c.post("/v1/slides", files={"file": ("a.png", f)}, data={"level": "one"},
                                     headers={"Authorization": f"Bearer {pipeline.device_key}"})
        unknown = await c.get(f"/v1/slides/{uuid.uuid4().hex}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert anonymous.status_code == 401
    assert json_body.status_code == 415 and "multipart/form-data" in json_body.json()["detail"]
    assert bad_level.status_code == 422 and "level" in bad_level.json()["detail"]
    assert unknown.status_code == 404
    assert list(pipeline.spool.iterdir()) == []
