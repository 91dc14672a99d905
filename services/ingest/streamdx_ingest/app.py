"""The ingest HTTP/WebSocket service (FastAPI): a thin shell around the acceptor.

Status codes: 202 accepted (also for an acknowledged duplicate seq); 401 missing/unknown key;
403 revoked key or a stream the device may not write; 409 out-of-order seq, absurd seq jump or
fs change; 413 body too large; 415 a JSON body sent without ``content-type: application/json``;
422 malformed or invalid content (t0 too far from the server clock); 429 busy/backpressure and 503 broker
or Redis unavailable, both with ``Retry-After``. A 2xx is returned only after the broker
acknowledged the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import AwareDatetime, BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.websockets import WebSocketDisconnect

from streamdx.logs import log_fields
from streamdx.messaging.errors import Backpressure, BrokerUnavailable
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import IngestMetrics, render_metrics
from streamdx.schemas.ecg import StreamId
from streamdx.schemas.esr import MAX_FRAME_BYTES
from streamdx.slide_records import SlideRecords
from streamdx_ingest.acceptance import ChunkAcceptor, SeqConflict
from streamdx_ingest.chunks import (
    ChunkAck,
    ChunkError,
    EcgChunkIn,
    chunk_adc,
    chunk_check_t0,
    chunk_to_message,
    utc_now,
)
from streamdx_ingest.devices import DeviceAuth, DeviceRegistry, KeyRevoked, KeyUnknown, stream_allowed
from streamdx_ingest.errors import request_errors
from streamdx_ingest.limits import BodyLimitMiddleware, RequestMetricsMiddleware
from streamdx_ingest.recordings import (
    Recording,
    RecordingError,
    recording_parse_csv,
    recording_parse_edf,
    recording_parse_wfdb,
)
from streamdx_ingest.replay import RecordingStatus, ReplayManager
from streamdx_ingest.routes import gateway as gateway_routes
from streamdx_ingest.routes import slides as slide_routes
from streamdx_ingest.sequencer import Sequencer, StreamBusy
from streamdx_ingest.settings import IngestSettings
from streamdx_ingest.slide_jobs import SlideJobs
from streamdx_ingest.tubes import FrameError, TubeConflict, TubeIn, TubeRegistry, TubeUnknown

__all__ = ["IngestDeps", "create_app"]

log = logging.getLogger("streamdx.ingest")


@dataclass
class IngestDeps:
    """Everything the routes use, built once at start-up and injected."""

    settings: IngestSettings
    redis: Redis
    publisher: Publisher
    metrics: IngestMetrics
    devices: DeviceRegistry
    acceptor: ChunkAcceptor
    replays: ReplayManager
    tubes: TubeRegistry


class DeviceIn(BaseModel):
    device_id: StreamId


class DeviceKeyOut(BaseModel):
    device_id: str
    api_key: str


class TubeOut(BaseModel):
    tube_id: str
    frames_url: str


class FrameAck(BaseModel):
    tube_id: str
    minute: int
    width: int
    height: int
    status: Literal["accepted"] = "accepted"


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]]


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _retry_response(status: int, detail: str, retry_after: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers={"Retry-After": str(retry_after)})


async def _connect_publisher(publisher: Publisher, stop: asyncio.Event) -> None:
    delay = 0.2
    while not stop.is_set() and not publisher.started:
        try:
            await publisher.start()
        except Exception as exc:
            log.warning("broker not reachable yet", extra=log_fields(error_type=type(exc).__name__, retry_in_s=delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 5.0)


async def get_deps(request: Request) -> IngestDeps:
    d: IngestDeps = request.app.state.deps
    return d


Deps = Annotated[IngestDeps, Depends(get_deps)]


async def get_device(d: Deps, authorization: Annotated[str | None, Header()] = None) -> DeviceAuth:
    return await d.devices.authenticate(_bearer(authorization))


Device = Annotated[DeviceAuth, Depends(get_device)]


async def require_admin(d: Deps, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = d.settings.ingest_admin_token
    if expected is None:
        raise HTTPException(403, "admin API disabled (INGEST_ADMIN_TOKEN unset)")
    token = _bearer(authorization)
    if token is None:
        raise HTTPException(401, "missing admin token", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise HTTPException(403, "invalid admin token")


def check_stream(auth: DeviceAuth, stream_id: str) -> None:
    if not stream_allowed(auth.device_id, stream_id):
        raise HTTPException(403, "this key may not write that stream")


def create_app(settings: IngestSettings, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the ingest app; connections are opened in the lifespan."""
    metrics = IngestMetrics(registry or CollectorRegistry())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        publisher = Publisher(settings.kafka_bootstrap, metrics, client_id="streamdx-ingest",
                              compression=settings.kafka_compression)
        sequencer = Sequencer(redis, settings.max_seq_jump)
        acceptor = ChunkAcceptor(publisher, sequencer, metrics, settings.stream_lock_wait_s)
        replays = ReplayManager(acceptor, redis, settings.replay_batch_chunks)
        tubes = TubeRegistry(redis, publisher, sequencer, settings.stream_lock_wait_s)
        app.state.deps = IngestDeps(settings, redis, publisher, metrics, DeviceRegistry(redis), acceptor, replays,
                                    tubes)
        app.state.gateway = gateway_routes.GatewayDeps(settings, DeviceRegistry(redis), acceptor, metrics)
        slide_jobs = SlideJobs(publisher, SlideRecords(redis), slide_routes.tiling_config(settings))
        app.state.slides = slide_routes.SlidesDeps(settings, SlideRecords(redis), slide_jobs, DeviceRegistry(redis))
        stop = asyncio.Event()
        connecting = asyncio.create_task(_connect_publisher(publisher, stop))
        try:
            yield
        finally:
            stop.set()
            await connecting
            await replays.shutdown()
            await slide_jobs.shutdown()
            await publisher.stop()
            await redis.aclose()

    app = FastAPI(
        title="StreamDx ingest",
        version="1.0.0",
        description="Device ECG chunks (HTTP, WebSocket, gateway batches), Holter recording upload, ESR frames, "
        "whole-slide uploads, device keys.",
        lifespan=lifespan,
    )

    def limit_for(path: str) -> int:
        if path.startswith("/v1/recordings"):
            return settings.max_upload_bytes
        if path.startswith(slide_routes.SLIDES_PREFIX):
            return settings.slides_max_upload_bytes + slide_routes.MULTIPART_SLACK
        if path.startswith(gateway_routes.GATEWAY_PREFIX):
            return settings.gateway_max_bytes
        if path.startswith("/v1/tubes/"):
            return MAX_FRAME_BYTES + 64 * 1024  # the frame plus multipart framing
        return settings.max_chunk_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics  # the process entry point observes the garbage collector in it

    # -- error mapping -------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, errors = request_errors(exc.errors(), exc.body, request.headers.get("content-type"))
        return JSONResponse({"detail": errors}, status_code=status)

    def plain_error(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    for exc_type, status in ((ChunkError, 422), (RecordingError, 422), (TubeUnknown, 404), (TubeConflict, 409),
                             (SeqConflict, 409), (KeyRevoked, 403)):
        app.add_exception_handler(exc_type, plain_error(status))

    @app.exception_handler(FrameError)
    async def frame_error(_: Request, exc: FrameError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413 if "exceeds" in str(exc) else 422)

    @app.exception_handler(KeyUnknown)
    async def key_unknown(_: Request, exc: KeyUnknown) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(BrokerUnavailable)
    async def broker_down(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return _retry_response(503, "broker unavailable, retry later", BrokerUnavailable.retry_after_s)

    @app.exception_handler(Backpressure)
    async def backpressure(_: Request, exc: Backpressure) -> JSONResponse:
        return _retry_response(429, "too many chunks in flight, slow down", Backpressure.retry_after_s)

    @app.exception_handler(StreamBusy)
    async def busy(_: Request, exc: StreamBusy) -> JSONResponse:
        return _retry_response(429, str(exc), StreamBusy.retry_after_s)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return _retry_response(503, "state store unavailable, retry later", 2)

    # -- ECG chunks -----------------------------------------------------------------
    responses: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorBody} for s in (401, 403, 409, 413, 415, 422, 429, 503)
    }

    @app.post("/v1/streams/{stream_id}/ecg", status_code=202, response_model=ChunkAck, responses=responses)
    async def post_chunk(stream_id: StreamId, chunk: EcgChunkIn, d: Deps, auth: Device) -> ChunkAck:
        """Publish one chunk; acknowledged (202) only after the broker acknowledged it."""
        check_stream(auth, stream_id)
        return await _accept_chunk(d, stream_id, chunk)

    @app.websocket("/v1/streams/{stream_id}/ws")
    async def ws_chunks(websocket: WebSocket, stream_id: str) -> None:
        """Continuous devices: one JSON chunk per text frame, one JSON reply per frame."""
        d: IngestDeps = websocket.app.state.deps
        await websocket.accept()
        try:
            auth = await d.devices.authenticate(_bearer(websocket.headers.get("authorization")))
        except (KeyUnknown, KeyRevoked) as exc:
            code = 401 if isinstance(exc, KeyUnknown) else 403
            await websocket.send_json({"status": "error", "code": code, "detail": str(exc)})
            await websocket.close(code=1008)
            return
        if not stream_allowed(auth.device_id, stream_id):
            await websocket.send_json({"status": "error", "code": 403, "detail": "this key may not write that stream"})
            await websocket.close(code=1008)
            return
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json(await _ws_frame(d, stream_id, text))
        except WebSocketDisconnect:
            return

    # -- recordings -----------------------------------------------------------------
    @app.post("/v1/recordings", status_code=202, response_model=RecordingStatus, responses=responses)
    async def post_recording(
        d: Deps,
        auth: Device,
        files: Annotated[list[UploadFile], File(description="WFDB .hea + .dat, one .edf, or one .csv")],
        stream_id: Annotated[StreamId, Form()],
        speed: Annotated[float, Form(ge=0, le=1000, description="0 = as fast as possible, 1 = real time")] = 0.0,
        chunk_s: Annotated[float, Form(ge=0.1, le=10)] = 1.0,
        fs: Annotated[float | None, Form(ge=125, le=1000, description="CSV without a time column")] = None,
    ) -> RecordingStatus:
        """Upload a Holter recording; it is replayed into ``ecg.samples`` in the background."""
        check_stream(auth, stream_id)
        blobs = {(f.filename or "").lower(): await f.read() for f in files}
        rec = await asyncio.to_thread(_parse_upload, blobs, fs)
        plan = await d.replays.start(
            rec, device_id=auth.device_id, stream_base=stream_id, chunk_s=chunk_s, speed=speed
        )
        log.info("recording accepted", extra=log_fields(recording_id=plan.recording_id, device_id=auth.device_id))
        return await _recording_status(d, plan.recording_id, auth.device_id)

    @app.get("/v1/recordings/{recording_id}", response_model=RecordingStatus,
             responses={**responses, 404: {"model": ErrorBody}})
    async def get_recording(recording_id: str, d: Deps, auth: Device) -> RecordingStatus:
        """Replay progress: the upload reply with status, chunks and samples published so far."""
        return await _recording_status(d, recording_id, auth.device_id)

    # -- ESR tubes ---------------------------------------------------------------------
    @app.post("/v1/tubes", status_code=201, responses={**responses, 200: {"model": TubeOut}})
    async def register_tube(tube: TubeIn, d: Deps, auth: Device, response: Response) -> TubeOut:
        """Register a tube (age, sex). Repeating the same registration returns 200."""
        check_stream(auth, tube.tube_id)
        if not await d.tubes.register(auth.device_id, tube):
            response.status_code = 200
        return TubeOut(tube_id=tube.tube_id, frames_url=f"/v1/tubes/{tube.tube_id}/frames")

    @app.post("/v1/tubes/{tube_id}/frames", status_code=202, response_model=FrameAck,
              responses={**responses, 404: {"model": ErrorBody}})
    async def post_frame(
        tube_id: StreamId, d: Deps, auth: Device,
        image: Annotated[UploadFile, File(description="JPEG or PNG camera frame")],
        minute: Annotated[int, Form(ge=0, le=120, description="Minutes since the tube was filled")],
        captured_at: Annotated[AwareDatetime | None, Form()] = None,
    ) -> FrameAck:
        """Upload the frame of one minute; published to ``esr.frames`` once."""
        check_stream(auth, tube_id)
        data = await image.read(MAX_FRAME_BYTES + 1)
        msg = await d.tubes.add_frame(auth.device_id, tube_id, minute, data, captured_at)
        return FrameAck(tube_id=tube_id, minute=minute, width=msg.width, height=msg.height)

    # -- admin ------------------------------------------------------------------------
    @app.post("/v1/admin/devices", status_code=201, response_model=DeviceKeyOut, dependencies=[Depends(require_admin)],
              responses=responses)
    async def create_device(body: DeviceIn, d: Deps) -> DeviceKeyOut:
        """Create (or rotate) a device's API key. The key is returned only this once."""
        key = await d.devices.create(body.device_id)
        return DeviceKeyOut(device_id=body.device_id, api_key=key)

    @app.delete("/v1/admin/devices/{device_id}", status_code=204, dependencies=[Depends(require_admin)],
                responses=responses)
    async def revoke_device(device_id: StreamId, d: Deps) -> Response:
        """Revoke a device's key (its requests then get 403)."""
        if not await d.devices.revoke(device_id):
            raise HTTPException(404, "no such device")
        return Response(status_code=204)

    app.include_router(slide_routes.router)
    app.include_router(gateway_routes.router)

    # -- operations ---------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    async def readyz(d: Deps) -> JSONResponse:
        checks = {"broker": d.publisher.started, "redis": False}
        with contextlib.suppress(Exception):
            checks["redis"] = bool(await d.redis.ping())
        return JSONResponse({"ready": all(checks.values()), **checks}, status_code=200 if all(checks.values()) else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(render_metrics(metrics.registry), media_type="text/plain; version=0.0.4")

    return app


async def _ws_frame(d: IngestDeps, stream_id: str, text: str) -> dict[str, Any]:
    if len(text.encode()) > d.settings.max_chunk_bytes:
        return {"status": "error", "code": 413, "detail": "frame too large"}
    try:
        chunk = EcgChunkIn.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        return {"status": "error", "code": 422, "detail": f"{'.'.join(map(str, first['loc']))}: {first['msg']}"}
    try:
        ack = await _accept_chunk(d, stream_id, chunk)
    except ChunkError as exc:
        return {"seq": chunk.seq, "status": "error", "code": 422, "detail": str(exc)}
    except SeqConflict as exc:
        return {"seq": chunk.seq, "status": "error", "code": 409, "detail": str(exc)}
    except (BrokerUnavailable, RedisConnectionError, RedisTimeoutError):
        return {"seq": chunk.seq, "status": "error", "code": 503, "detail": "unavailable", "retry_after": 2}
    except (Backpressure, StreamBusy):
        return {"seq": chunk.seq, "status": "error", "code": 429, "detail": "busy", "retry_after": 1}
    return ack.model_dump()


async def _recording_status(d: IngestDeps, recording_id: str, device_id: str) -> RecordingStatus:
    status = await d.replays.status(recording_id, device_id)
    if status is None:
        raise HTTPException(404, "no such recording for this device")
    return status


async def _accept_chunk(d: IngestDeps, stream_id: str, chunk: EcgChunkIn) -> ChunkAck:
    """Validate and publish one device chunk (HTTP or WebSocket)."""
    s = d.settings
    chunk_check_t0(chunk, utc_now(), s.max_clock_skew_s, s.max_t0_age_s)
    adc = chunk_adc(chunk, s.max_abs_mv)
    decision = (await d.acceptor.accept(stream_id, [chunk_to_message(stream_id, chunk, adc, 0)]))[0]
    status: Literal["accepted", "duplicate"] = "duplicate" if decision.kind == "duplicate" else "accepted"
    return ChunkAck(seq=chunk.seq, status=status, gap_before=decision.gap_before, clock_drift_s=decision.clock_drift_s)


def _parse_upload(blobs: dict[str, bytes], fs: float | None) -> Recording:
    names = list(blobs)
    heas = [n for n in names if n.endswith(".hea")]
    dats = [n for n in names if n.endswith(".dat")]
    if heas and dats and len(names) == 2:
        return recording_parse_wfdb(blobs[heas[0]], blobs[dats[0]])
    if len(names) == 1 and names[0].endswith((".edf", ".edf+")):
        return recording_parse_edf(blobs[names[0]])
    if len(names) == 1 and names[0].endswith(".csv"):
        return recording_parse_csv(blobs[names[0]], fs=fs)
    raise RecordingError("upload either a WFDB .hea and .dat pair, one .edf file, or one .csv file")


