"""Whole-slide uploads: ``POST /v1/slides``, ``GET /v1/slides/{id}``, ``GET /v1/slides/{id}/geojson``.

An admin token or a device key may upload. The upload is streamed to the spool folder, opened
and validated (format, truncation, size, level, tissue on a thumbnail) before anything is
recorded; only a slide that passes gets a record in Redis and a tiling job, and the reply is 202.
Any refusal (413, 415, 422, or 503 when Redis is down) leaves neither a record nor a file.
A slide is visible to the admin and to the device that uploaded it (404 for everyone else).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from streamdx.logs import log_fields
from streamdx.slide_records import SlideRecords, SlideResult, SlideState
from streamdx_inference.slides.annotations import boxes_to_geojson
from streamdx_ingest.devices import DeviceRegistry
from streamdx_ingest.settings import IngestSettings
from streamdx_ingest.slide_jobs import SlideJobs, TilingConfig
from streamdx_ingest.slide_reader import SlideError, SlideSource, remove_quietly, slide_open
from streamdx_ingest.slide_tiles import tissue_area_mm2, tissue_tiles_estimate
from streamdx_ingest.slide_upload import spool_multipart

__all__ = ["SLIDES_PREFIX", "SlideStatus", "SlidesDeps", "router", "tiling_config"]

SLIDES_PREFIX = "/v1/slides"
#: Longest side of the thumbnail the blank-slide check and the tissue area are computed on.
THUMB_SIDE = 2048
#: Room for the multipart framing and form fields on top of the file limit (bytes).
MULTIPART_SLACK = 64 * 1024

router = APIRouter(prefix=SLIDES_PREFIX, tags=["slides"])
log = logging.getLogger("streamdx.ingest.slides")


@dataclass
class SlidesDeps:
    """What the slide routes use (set on ``app.state.slides`` by the ingest lifespan)."""

    settings: IngestSettings
    records: SlideRecords
    jobs: SlideJobs
    devices: DeviceRegistry


class SlideStatus(BaseModel):
    """A slide and its progress (the upload reply and ``GET /v1/slides/{id}``)."""

    slide_id: str
    status: SlideState
    filename: str
    width: int = Field(description="Width of the tiled level in pixels")
    height: int = Field(description="Height of the tiled level in pixels")
    level: int = Field(description="Pyramid level tiled (0 = full resolution)")
    downsample: float = Field(description="Level size relative to level 0")
    mpp: float | None = Field(description="µm per pixel of the tiled level (None: not stated)")
    tiles_total: int = Field(description="Tissue tiles published in all (0 until tiling has finished)")
    tiles_published: int
    tiles_detected: int
    error: str | None = None
    result: SlideResult | None = Field(default=None, description="Merged detections once status is done")
    status_url: str
    geojson_url: str


def tiling_config(s: IngestSettings) -> TilingConfig:
    """The tiling job's configuration from the ingest settings."""
    return TilingConfig(tile_w=s.slides_tile_width, tile_h=s.slides_tile_height, overlap=s.slides_tile_overlap,
                        min_tissue=s.slides_min_tissue, max_tile_bytes=s.slides_max_tile_bytes,
                        publish_batch=s.slides_publish_batch, threads=s.slides_tiling_threads)


async def get_slides(request: Request) -> SlidesDeps:
    deps: SlidesDeps = request.app.state.slides
    return deps


Deps = Annotated[SlidesDeps, Depends(get_slides)]


async def get_owner(d: Deps, authorization: Annotated[str | None, Header()] = None) -> str:
    """``"admin"`` for the admin token, ``"device:<id>"`` for a device key (401/403 otherwise)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    admin = d.settings.ingest_admin_token
    if token and admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return "admin"
    auth = await d.devices.authenticate(token or None)  # KeyUnknown → 401, KeyRevoked → 403 (app handlers)
    return f"device:{auth.device_id}"


Owner = Annotated[str, Depends(get_owner)]


def _form_number(fields: dict[str, str], name: str, kind: type[int] | type[float]) -> Any:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise SlideError(422, f"form field {name!r} must be a{'n integer' if kind is int else ' number'}, "
                              f"got {raw[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SlideError(422, f"form field {name!r} must be finite")
    return value


def _validate(d: SlidesDeps, path: Any, fields: dict[str, str], unpack: Any) -> tuple[SlideSource, float | None]:
    """Open the spooled upload and refuse blank slides (runs in a thread)."""
    s = d.settings
    level = _form_number(fields, "level", int) or 0
    mpp = _form_number(fields, "mpp", float)
    source = slide_open(path, level=level, mpp=mpp, max_side=s.slides_max_side_px,
                        max_decoded_pixels=s.slides_max_decoded_pixels, max_zip_bytes=s.slides_max_upload_bytes,
                        unpack_dir=unpack)
    try:
        thumb = source.thumbnail(THUMB_SIDE)
        n = tissue_tiles_estimate(thumb, source.width, source.height, tile_w=s.slides_tile_width,
                                  tile_h=s.slides_tile_height, overlap=s.slides_tile_overlap,
                                  min_tissue=s.slides_min_tissue)
        if n == 0:
            raise SlideError(422, "the slide is blank: no tile holds tissue (nothing to detect)")
        return source, tissue_area_mm2(thumb, source.width, source.height, source.mpp)
    except BaseException:
        source.close()
        raise


@router.post("", status_code=202, response_model=SlideStatus,
             responses={s: {"description": d} for s, d in (
                 (401, "missing or unknown key"), (403, "revoked key"), (413, "upload over the limit"),
                 (415, "not an image format we read"), (422, "truncated, corrupt, blank or absurd slide"),
                 (503, "Redis unavailable"))})
async def post_slide(request: Request, d: Deps, owner: Owner) -> SlideStatus:
    """Upload a slide (multipart field ``file``; optional form fields ``level`` — the pyramid level
    to tile, default 0 — and ``mpp``, µm per pixel of level 0 when the file states none). It is tiled
    and the tissue tiles published to ``slides.tiles`` in the background; poll the ``status_url``."""
    s = d.settings
    slide_id = uuid.uuid4().hex
    spool = s.slides_spool_dir
    await asyncio.to_thread(spool.mkdir, parents=True, exist_ok=True)
    upload_path, unpack = spool / f"{slide_id}.upload", spool / f"{slide_id}.d"
    started = False
    try:
        upload = await spool_multipart(request.headers.get("content-type"), request.stream(), upload_path,
                                       max_bytes=s.slides_max_upload_bytes)
        source, area = await asyncio.to_thread(_validate, d, upload_path, upload.fields, unpack)
        try:
            fields: dict[str, str | int | float] = {
                "owner": owner, "filename": upload.filename, "format": source.backend, "width": source.width,
                "height": source.height, "level": source.level, "downsample": source.downsample,
                "mpp": "" if source.mpp is None else source.mpp,
                "tissue_area_mm2": "" if area is None else area, "created_at": datetime.now(UTC).isoformat(),
            }
            await d.records.create(slide_id, fields)
            d.jobs.start(slide_id, source, spool, (upload_path, unpack))
            started = True
        finally:
            if not started:
                source.close()
    except SlideError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    finally:
        if not started:
            remove_quietly(upload_path, unpack)
            if await _exists(d, slide_id):
                await d.records.delete(slide_id)
    log.info("slide accepted", extra=log_fields(slide_id=slide_id, owner=owner, size=upload.size))
    return await _status(d, slide_id, owner)


async def _exists(d: SlidesDeps, slide_id: str) -> bool:
    try:
        return await d.records.get(slide_id) is not None
    except Exception:
        return False


async def _record(d: SlidesDeps, slide_id: str, owner: str) -> dict[str, str]:
    rec = await d.records.get(slide_id)
    if rec is None or (owner != "admin" and rec.get("owner") != owner):
        raise HTTPException(404, "no such slide for this key")
    return rec


def _status_from(slide_id: str, rec: dict[str, str], result: SlideResult | None) -> SlideStatus:
    def num(name: str, kind: type[int] | type[float] = int) -> Any:
        raw = rec.get(name, "")
        return kind(raw) if raw else None

    return SlideStatus(
        slide_id=slide_id, status=rec.get("status", "failed"),  # type: ignore[arg-type]
        filename=rec.get("filename", ""), width=num("width") or 0, height=num("height") or 0,
        level=num("level") or 0, downsample=num("downsample", float) or 1.0, mpp=num("mpp", float),
        tiles_total=num("tiles_total") or 0, tiles_published=num("tiles_published") or 0,
        tiles_detected=num("tiles_detected") or 0, error=rec.get("error") or None, result=result,
        status_url=f"{SLIDES_PREFIX}/{slide_id}", geojson_url=f"{SLIDES_PREFIX}/{slide_id}/geojson",
    )


async def _status(d: SlidesDeps, slide_id: str, owner: str) -> SlideStatus:
    rec = await _record(d, slide_id, owner)
    result = await d.records.get_result(slide_id) if rec.get("status") == "done" else None
    return _status_from(slide_id, rec, result)


@router.get("/{slide_id}", response_model=SlideStatus, responses={404: {"description": "no such slide"}})
async def get_slide(slide_id: str, d: Deps, owner: Owner) -> SlideStatus:
    """Status (``uploaded``, ``tiling``, ``detecting``, ``done``, ``failed``), tiles published /
    detected / total and, when done, the merged result (boxes in level pixels, scores, count,
    density per mm² of tissue when the slide has a resolution)."""
    return await _status(d, slide_id, owner)


@router.get("/{slide_id}/geojson", responses={404: {"description": "no such slide"},
                                              409: {"description": "the slide is not done yet"}})
async def get_slide_geojson(slide_id: str, d: Deps, owner: Owner) -> JSONResponse:
    """The merged detections as a GeoJSON FeatureCollection in level-0 pixels (QuPath: *File →
    Import objects*), one rectangle per glomerulus with its score."""
    rec = await _record(d, slide_id, owner)
    result = await d.records.get_result(slide_id) if rec.get("status") == "done" else None
    if result is None:
        raise HTTPException(409, f"the slide is not done yet (status {rec.get('status', '?')})")
    downsample = float(rec.get("downsample") or 1.0)
    body = boxes_to_geojson(np.asarray(result.boxes, np.float64).reshape(-1, 4) * downsample, result.scores)
    return JSONResponse(body, media_type="application/geo+json",
                        headers={"Content-Disposition": f'attachment; filename="{slide_id}.geojson"'})
