"""``/upload`` and ``/recordings/{id}``: upload a Holter file, watch its replay, see the waveform with the
beats the pipeline labelled, download the labels.

The upload goes through ingest exactly as a device's would: a device key from the ingest admin API
(``POST /v1/admin/devices``), then ``POST /v1/recordings`` with ``speed=0``. Before that the file is
parsed with ingest's own parsers (:mod:`streamdx_ingest.recordings`) — the same code and messages as
the ingest endpoint — because the console must know the streams the replay will create (one per
lead, :func:`~streamdx_ingest.replay.replay_stream_ids`) and :meth:`LiveCache.retain` them *before*
the first chunk is published, or the live cache would keep only the last 30 s. Every problem is a
message on the upload page (never a 500): too large (413, checked while the body streams in), not a
supported format, whatever the parser or ingest refuses, ingest unreachable.

A header-less CSV of single beats in the Kaggle heartbeat layout (187 values per row, optional
class column; :func:`streamdx_web.kaggle_beats.kaggle_candidate`) is not a recording: it is
parsed and checked by :func:`~streamdx_web.kaggle_beats.parse_kaggle_csv` (bad rows are named in
the message), classified in a thread by the ``ecg_kaggle_beats`` model (trained intra-patient on
MITDB by ``streamdx train kaggle-beats``) and shown at ``/upload/kaggle/{id}``
(:mod:`streamdx_web.routes.kaggle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive

from streamdx.logs import log_fields
from streamdx_ingest.recordings import (
    Recording,
    RecordingError,
    recording_parse_csv,
    recording_parse_edf,
    recording_parse_wfdb,
)
from streamdx_ingest.replay import replay_stream_ids
from streamdx_web.deps import Deps, get_deps
from streamdx_web.kaggle_beats import (
    MAX_ROWS,
    KaggleCsvError,
    classify_and_store,
    kaggle_candidate,
    parse_kaggle_csv,
    recent_results,
)
from streamdx_web.live import StreamView
from streamdx_web.recordings import (
    UploadMeta,
    beat_rows,
    label_records,
    labels_csv,
    load_meta,
    recent_uploads,
    save_meta,
    signal_window,
    stream_origin,
)
from streamdx_web.security import User, check_csrf

__all__ = ["KAGGLE_FORMAT", "kaggle_layout", "router"]

log = logging.getLogger("streamdx.web")

#: Multipart framing and the small form fields allowed on top of the file bytes.
_FORM_OVERHEAD = 16 * 1024
#: Largest body read (and discarded) to answer an over-large upload with a page instead of a reset.
_DRAIN_CAP = 1 << 30
_TERMINAL = ("done", "failed", "interrupted")
#: Labels settle when the last label is this close to the end of the signal (s) ...
_END_SLACK_S = 3.0
#: ... or when no new label arrived for this long after the replay ended (s).
_SETTLE_S = 6.0
#: A replayed recording that yields no beat at all in this long is shown as it is (non-ECG input).
_NO_BEATS_S = 25.0

KAGGLE_FORMAT = (
    "The single-beat Kaggle layout (MIT-BIH heartbeat CSVs): no header row, one beat per row, 187 values at 125 Hz "
    "from the R peak, min–max scaled to [0, 1] and zero-padded, optionally a 188th column with the class 0–4 "
    "(N, S, V, F, Q). At most " + f"{MAX_ROWS:,}".replace(",", " ") + " beats per file."
)


class UploadTooLarge(Exception):
    def __init__(self, size: int, exact: bool) -> None:
        super().__init__("upload too large")
        self.size = size
        self.exact = exact


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise UploadTooLarge(seen, exact=False)
        return msg

    return wrapped


class LimitedUploadRoute(APIRoute):
    """Enforces ``web_max_upload_bytes`` while the body streams in: a declared Content-Length above
    it is refused after draining (so the browser shows the page, not a reset), a body that grows
    past it stops being read. Either way the upload page says so (413)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            if request.method != "POST":
                return await handler(request)
            deps: Deps = request.app.state.deps
            limit = deps.settings.web_max_upload_bytes + _FORM_OVERHEAD
            declared = request.headers.get("content-length", "")
            try:
                if declared.isdigit() and int(declared) > limit:
                    drained = 0
                    async for part in request.stream():
                        drained += len(part)
                        if drained > _DRAIN_CAP:
                            break
                    raise UploadTooLarge(int(declared), exact=True)
                request = Request(request.scope, _counting(request.receive, limit))
                return await handler(request)
            except UploadTooLarge as exc:
                max_b = deps.settings.web_max_upload_bytes
                size = f"is {_fmt_bytes(exc.size)}" if exc.exact else f"exceeds {_fmt_bytes(exc.size)}"
                msg = (f"The upload {size}; the console accepts at most {_fmt_bytes(max_b)} per upload "
                       "(413 Payload Too Large). Split the recording into shorter files, or ask the "
                       "administrator to raise WEB_MAX_UPLOAD_BYTES.")  # fmt: skip
                return await _upload_page(request, deps, error=msg, status=413)

        return limited


router = APIRouter(tags=["upload"], route_class=LimitedUploadRoute)


async def _upload_page(request: Request, deps: Deps, *, error: str | None = None, status: int = 200,
                       detail: str | None = None) -> Response:
    try:
        uploads = await recent_uploads(deps.redis)
    except Exception:  # Redis down: the form still works
        uploads = []
    try:
        beat_files = await asyncio.to_thread(recent_results, Path(deps.settings.web_runs_dir))
    except OSError:
        beat_files = []
    return deps.templates.TemplateResponse(request, "upload.html", {
        "error": error, "detail": detail, "uploads": uploads, "beat_files": beat_files,
        "max_bytes": _fmt_bytes(deps.settings.web_max_upload_bytes), "max_rows": f"{MAX_ROWS:,}".replace(",", " "),
    }, status_code=status)  # fmt: skip


@router.get("/upload", response_class=HTMLResponse)
async def upload_form(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    return await _upload_page(request, deps)


# ---------------------------------------------------------------------------------- parsing


def kaggle_layout(data: bytes) -> bool:
    """True for a CSV whose first row is already data with 187 or 188 numbers (the MIT-BIH heartbeat
    Kaggle layout: 187 samples of one beat, optional label)."""
    head = data[:16384].decode("utf-8", "replace").lstrip("\ufeff").split("\n", 1)[0]
    values = [v.strip() for v in head.replace(";", ",").replace("\t", ",").split(",") if v.strip()]
    if len(values) not in (187, 188):
        return False
    try:
        nums = [float(v) for v in values]
    except ValueError:
        return False
    return all(math.isfinite(v) for v in nums)


def _parse(blobs: dict[str, bytes], fs: float | None) -> tuple[Recording, str]:
    """Ingest's parsers on the upload (same dispatch as ``POST /v1/recordings``) and the format."""
    exts = sorted(blobs)
    if exts == [".dat", ".hea"]:
        return recording_parse_wfdb(blobs[".hea"], blobs[".dat"]), "WFDB"
    if exts in ([".edf"], [".edf+"]):
        return recording_parse_edf(blobs[exts[0]]), "EDF"
    if exts == [".csv"]:
        return recording_parse_csv(blobs[".csv"], fs=fs), "CSV"
    raise RecordingError("upload either a WFDB .hea and .dat pair, one .edf file, or one .csv file")


def _ext(name: str) -> str:
    low = name.lower()
    if low.endswith(".edf+"):
        return ".edf+"
    dot = low.rfind(".")
    return low[dot:] if dot > 0 else ""


def _ingest_detail(r: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        detail = r.json().get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail:
            first = detail[0]
            return str(first.get("msg", first)) if isinstance(first, dict) else str(first)
    return r.text[:300] or r.reason_phrase


@router.post("/upload", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def upload(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    form = await request.form(max_files=8, max_fields=8)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    if not files:
        return await _upload_page(request, deps, error="Choose a file to upload.", status=422)
    blobs: dict[str, bytes] = {}
    ignored = 0
    for f in files:
        ext = _ext(f.filename or "")
        if ext == ".atr":  # reference annotations: not needed, the pipeline labels the beats
            ignored += 1
            continue
        if ext not in (".hea", ".dat", ".edf", ".edf+", ".csv"):
            shown = ext or "a file without an extension"
            return await _upload_page(request, deps, status=415, error=(
                f"{shown} is not a recording format the console accepts. Upload a WFDB .hea + .dat pair "
                "(an .atr may come along and is ignored), one EDF/EDF+ file, or one CSV file."))
        if ext in blobs:
            return await _upload_page(request, deps, status=422,
                                      error=f"Two {ext} files: upload one recording at a time.")
        blobs[ext] = await f.read()
    fs_text = str(form.get("fs") or "").strip()
    fs: float | None = None
    if fs_text:
        try:
            fs = float(fs_text)
        except ValueError:
            return await _upload_page(request, deps, status=422,
                                      error=f"Sampling frequency {fs_text!r} is not a number.")
    if list(blobs) == [".csv"] and kaggle_candidate(blobs[".csv"]):
        return await _kaggle_upload(request, deps, user, blobs.pop(".csv"))
    try:
        rec, fmt = await asyncio.to_thread(_parse, blobs, fs)
    except RecordingError as exc:
        return await _upload_page(request, deps, status=422, error=f"The recording cannot be used: {exc}.")
    except MemoryError:
        return await _upload_page(request, deps, status=413, error="The recording is too large to read.")

    device_id = f"web-{uuid.uuid4().hex[:12]}"
    streams = replay_stream_ids(device_id, rec)
    try:
        r = await deps.ingest.post("/v1/admin/devices", json={"device_id": device_id})
        if r.status_code != 201:
            return await _upload_page(request, deps, status=502, error=(
                f"Ingest refused a device key for the upload ({r.status_code}: {_ingest_detail(r)}). "
                "Check INGEST_ADMIN_TOKEN of the console and the ingest service."))
        key = r.json()["api_key"]
        for s in streams:  # before the first chunk: the cache keeps the whole recording
            deps.live.retain(s)
        data: dict[str, str] = {"stream_id": device_id, "speed": "0"}
        if fs is not None:
            data["fs"] = repr(fs)
        names = {".hea": "recording.hea", ".dat": "recording.dat", ".edf": "recording.edf",
                 ".edf+": "recording.edf", ".csv": "recording.csv"}  # fmt: skip
        r = await deps.ingest.post("/v1/recordings", headers={"Authorization": f"Bearer {key}"}, data=data,
                                   files=[("files", (names[e], b, "application/octet-stream"))
                                          for e, b in blobs.items()], timeout=120)  # fmt: skip
    except httpx.HTTPError as exc:
        log.warning("ingest unreachable for an upload", extra=log_fields(error_type=type(exc).__name__))
        await _revoke(deps, device_id)
        return await _upload_page(request, deps, status=503, error=(
            f"The ingest service ({deps.settings.ingest_url}) is unreachable ({type(exc).__name__}); "
            "the recording was not uploaded. Try again when it is back."))
    if r.status_code != 202:
        await _revoke(deps, device_id)
        detail = _ingest_detail(r)
        what = {413: "The recording is larger than ingest accepts",
                429: "Ingest is busy; try again in a moment",
                503: "Ingest cannot reach its broker or Redis; try again later"}.get(
            r.status_code, "Ingest refused the recording")  # fmt: skip
        return await _upload_page(request, deps, status=r.status_code if r.status_code < 500 else 503,
                                  error=f"{what} ({r.status_code}): {detail}.")
    st = r.json()
    if list(st.get("streams", [])) != streams:  # never expected: same code on both sides
        for s in st.get("streams", []):
            deps.live.retain(s)
        streams = list(st["streams"])
    meta = UploadMeta(recording_id=st["recording_id"], device_id=device_id, streams=streams,
                      leads=list(rec.leads), fs=rec.fs, n_samples=rec.n_samples, fmt=fmt, uploaded_by=user,
                      created=time.time(), api_key=key, atr_ignored=ignored > 0)  # fmt: skip
    await save_meta(deps.redis, meta, new=True)
    log.info("recording uploaded", extra=log_fields(recording_id=meta.recording_id, device_id=device_id))
    return RedirectResponse(f"/recordings/{meta.recording_id}", status_code=303)


async def _kaggle_upload(request: Request, deps: Deps, user: str, data: bytes) -> Response:
    """A single-beat Kaggle CSV: check every row, classify them all in a thread, show the result."""
    try:
        parsed = await asyncio.to_thread(parse_kaggle_csv, data)
    except KaggleCsvError as exc:
        return await _upload_page(request, deps, status=422, detail=KAGGLE_FORMAT,
                                  error=f"This single-beat (Kaggle layout) CSV cannot be classified. {exc}")
    except MemoryError:
        return await _upload_page(request, deps, status=413, error="The CSV is too large to read.")
    del data
    try:
        rid = await asyncio.to_thread(classify_and_store, parsed, deps.settings.models_dir,
                                      Path(deps.settings.web_runs_dir), user)  # fmt: skip
    except FileNotFoundError:
        return await _upload_page(request, deps, status=503, error=(
            "The single-beat model (ecg_kaggle_beats) is not installed in MODELS_DIR "
            f"({deps.settings.models_dir}); an administrator can build it with `streamdx train kaggle-beats`."))
    except OSError as exc:
        log.warning("kaggle result not stored", extra=log_fields(error_type=type(exc).__name__))
        return await _upload_page(request, deps, status=507, error=(
            "The classification could not be stored in WEB_RUNS_DIR (disk full or not writable); "
            "nothing was kept. Try again later or tell the administrator."))
    log.info("single-beat csv classified", extra=log_fields(recording_id=rid, count=int(parsed.beats.shape[0])))
    return RedirectResponse(f"/upload/kaggle/{rid}", status_code=303)


async def _revoke(deps: Deps, device_id: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await deps.ingest.delete(f"/v1/admin/devices/{device_id}")


# ------------------------------------------------------------------------------ recordings


async def _meta_or_404(deps: Deps, recording_id: str) -> UploadMeta:
    m = await load_meta(deps.redis, recording_id)
    if m is None:
        raise HTTPException(404, "No such upload (uploads are kept for 7 days).")
    return m


async def _status(deps: Deps, m: UploadMeta) -> tuple[dict[str, Any] | None, str | None]:
    """The ingest status of the upload (stored for good once the replay has ended; the upload's
    device key is then revoked) or an error message."""
    if m.final is not None:
        return m.final, None
    if not m.api_key:
        return None, "the upload's progress is no longer available"
    try:
        r = await deps.ingest.get(f"/v1/recordings/{m.recording_id}", headers={"Authorization": f"Bearer {m.api_key}"})
    except httpx.HTTPError as exc:
        return None, f"ingest unreachable ({type(exc).__name__}); retrying"
    if r.status_code != 200:
        return None, f"ingest answered {r.status_code}: {_ingest_detail(r)}"
    st: dict[str, Any] = r.json()
    if st.get("status") in _TERMINAL:
        m.final, m.api_key = st, ""
        await save_meta(deps.redis, m)
        await _revoke(deps, m.device_id)
    return st, None


def _views(deps: Deps, m: UploadMeta) -> list[StreamView | None]:
    return [deps.live.streams.get(s) for s in m.streams]


def _labels_state(deps: Deps, m: UploadMeta) -> tuple[int, bool]:
    """(labels in the cache, labels reach the end of every stream)."""
    views = _views(deps, m)
    n = sum(len(v.labels) for v in views if v is not None)
    complete = all(v is not None and v.final and v.labels and v.labels[-1].t >= v.last_signal_t - _END_SLACK_S
                   for v in views)  # fmt: skip
    return n, complete


def _progress(m: UploadMeta, st: dict[str, Any] | None) -> float:
    if not st or not st.get("samples_total"):
        return 0.0
    if st.get("status") == "done":
        return 1.0
    done = st.get("samples_published", 0) + st.get("chunks_duplicate", 0) * (st["samples_total"] / max(
        1, st.get("chunks_total", 1)))  # fmt: skip
    return float(min(1.0, done / st["samples_total"]))


@router.get("/recordings/{recording_id}", response_class=HTMLResponse)
async def recording_page(request: Request, recording_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                         stream: str | None = None, view: int = 0) -> Response:
    m = await _meta_or_404(deps, recording_id)
    st, err = await _status(deps, m)
    n, complete = _labels_state(deps, m)
    in_memory = any(v is not None and v.n_samples for v in _views(deps, m))
    show = bool(st and st.get("status") == "done" and in_memory and (complete or view))
    sid = stream if stream in m.streams else m.streams[0]
    v = deps.live.streams.get(sid)
    ctx: dict[str, Any] = {
        "m": m, "st": st, "err": err, "n_labels": n, "progress": _progress(m, st), "show": show, "stream": sid,
        "lead": m.lead_of(sid), "poll": _poll_url(m, n, time.time()) if not show else None,
        "in_memory": in_memory, "counts": _class_counts(v) if v is not None else {},
        "kept_s": (v.n_samples / v.fs) if v is not None and v.fs else 0.0,
    }  # fmt: skip
    return deps.templates.TemplateResponse(request, "recording.html", ctx)


def _poll_url(m: UploadMeta, n: int, since: float) -> str:
    return f"/recordings/{m.recording_id}/status?n={n}&since={since:.1f}"


def _class_counts(v: StreamView) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in v.labels:
        k = p.beat_class if p.quality == "ok" and p.beat_class else ("unreadable" if p.quality != "ok" else "—")
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: ("NSVFQ".find(kv[0]) % 9, kv[0])))


@router.get("/recordings/{recording_id}/status", response_class=HTMLResponse)
async def recording_status(request: Request, recording_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                           n: int = 0, since: float = 0.0) -> Response:
    """The progress box (htmx polls it); sends the browser to the viewer once the labels are in."""
    m = await _meta_or_404(deps, recording_id)
    st, err = await _status(deps, m)
    count, complete = _labels_state(deps, m)
    now = time.time()
    if count != n or not math.isfinite(since):
        since = now
    done = bool(st and st.get("status") == "done")
    settled = done and ((complete and count > 0) or (count > 0 and now - since >= _SETTLE_S)
                        or (count == 0 and now - since >= _NO_BEATS_S))  # fmt: skip
    if settled:
        return HTMLResponse("<p>Labels are in; opening the waveform…</p>",
                            headers={"HX-Redirect": f"/recordings/{recording_id}?view=1"})
    return deps.templates.TemplateResponse(request, "recording_status.html", {
        "m": m, "st": st, "err": err, "n_labels": count, "progress": _progress(m, st),
        "poll": _poll_url(m, count, since) if not (st and st.get("status") in ("failed", "interrupted")) else None,
    })  # fmt: skip


def _view_or_404(deps: Deps, m: UploadMeta, stream: str | None) -> tuple[str, StreamView]:
    sid = stream if stream in m.streams else m.streams[0]
    v = deps.live.streams.get(sid)
    if v is None:
        raise HTTPException(404, "This recording is no longer in the console's memory (the console restarted or "
                                 "dropped it); upload it again to see it.")
    return sid, v


@router.get("/recordings/{recording_id}/signal")
async def recording_signal(recording_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                           stream: str | None = None, t0: float | None = None, t1: float | None = None,
                           overview: int = 0) -> JSONResponse:
    """Samples of a window (s from the recording's start): every sample for windows up to ~80 s at
    360 Hz, a min/max envelope beyond (the overview), with the window's beats and unreadable spans."""
    m = await _meta_or_404(deps, recording_id)
    _, v = _view_or_404(deps, m, stream)
    origin = stream_origin(v, m.n_samples)
    kw: dict[str, int] = {"max_full": 0, "buckets": 1500} if overview else {}
    return JSONResponse(await asyncio.to_thread(signal_window, v, origin, t0, t1, **kw))


@router.get("/recordings/{recording_id}/beats", response_class=HTMLResponse)
async def recording_beats(request: Request, recording_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                          stream: str | None = None, page: int = 1) -> Response:
    m = await _meta_or_404(deps, recording_id)
    sid, v = _view_or_404(deps, m, stream)
    rows, pages = beat_rows(v, stream_origin(v, m.n_samples), page)
    page = min(max(page, 1), pages)
    return deps.templates.TemplateResponse(request, "recording_beats.html", {
        "m": m, "stream": sid, "rows": rows, "page": page, "pages": pages})


def _export(deps: Deps, m: UploadMeta, stream: str | None) -> list[dict[str, Any]]:
    sids = [stream] if stream in m.streams else m.streams
    items = []
    for s in sids:
        v = deps.live.streams.get(s)
        if v is not None:
            items.append((s, m.lead_of(s), v, stream_origin(v, m.n_samples)))
    if not items:
        raise HTTPException(404, "This recording's labels are no longer in the console's memory.")
    return label_records(items)


@router.get("/recordings/{recording_id}/labels.csv")
async def labels_as_csv(recording_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                        stream: str | None = None) -> Response:
    m = await _meta_or_404(deps, recording_id)
    body = labels_csv(_export(deps, m, stream))
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="labels-{recording_id[:12]}.csv"'})


@router.get("/recordings/{recording_id}/labels.json")
async def labels_as_json(recording_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                         stream: str | None = None) -> Response:
    m = await _meta_or_404(deps, recording_id)
    body = {"recording_id": recording_id, "streams": m.streams, "leads": m.leads, "fs": m.fs,
            "t_s": "seconds from the start of the recording", "labels": _export(deps, m, stream)}  # fmt: skip
    return Response(json.dumps(body), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="labels-{recording_id[:12]}.json"'})
