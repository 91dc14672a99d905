"""``/reports``, ``/reports/{stream_id}`` and ``/reports/{stream_id}.pdf``: the Holter report of a stream.

The numbers are the alerts service's summary (``GET /v1/streams/{id}/summary``: HR min/mean/max, hourly
HR, AF episodes and burden, S and V beats, pauses, longest VT run) — the state its alarms were computed
from; nothing is recomputed here. What the console adds from its live cache, when the stream is still in
memory: the per-minute HR curve and example 10-s strips (start of the longest AF episode, the longest
pause, the first V and S beats, the fastest and slowest heart rate). Charts and strips are server-side
SVG (matplotlib), so the PDF (WeasyPrint, from a print template) shows them too.

A stream whose id ends in ``.pdf`` can only be reached as PDF: the PDF route is matched first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from streamdx_web.charts import data_uri, hr_trend_svg, strip_svg
from streamdx_web.deps import Deps, get_deps
from streamdx_web.live import LabelPoint, StreamView
from streamdx_web.recordings import recent_uploads
from streamdx_web.security import User

__all__ = ["router"]

router = APIRouter(tags=["reports"])

_STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
STRIP_S = 10.0
MAX_STRIPS = 5


def _fmt_duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


def _epoch(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    return None


def _clock(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "—"


async def _summary(deps: Deps, stream_id: str) -> tuple[dict[str, Any] | None, str | None, int]:
    try:
        r = await deps.alerts.get(f"/v1/streams/{stream_id}/summary")
    except httpx.HTTPError as exc:
        return None, (f"The alerts service ({deps.settings.alerts_url}) is unreachable ({type(exc).__name__}), "
                      "so there is no Holter summary right now. Try again when it is back."), 503  # fmt: skip
    if r.status_code == 404:
        return None, ("The alerts service has no summary of this stream: it has no labelled beats yet (a replay "
                      "still running, or the pipeline not keeping up), or its state has expired."), 404  # fmt: skip
    if r.status_code != 200:
        detail = ""
        with contextlib.suppress(ValueError):
            detail = str(r.json().get("detail", ""))
        return None, f"The alerts service answered {r.status_code} {detail}".strip() + ".", 502
    body: dict[str, Any] = r.json()
    return body, None, 200


def _key(p: LabelPoint) -> str:
    if p.quality != "ok":
        return "u"
    if p.beat_class in ("V", "S", "F", "Q"):
        return p.beat_class
    return "AF" if p.af else (p.beat_class or "N")


def _minutes(labels: list[LabelPoint]) -> list[tuple[float, float, float, float]]:
    """Per-minute (start, mean, min, max) of the instantaneous rate of readable beats."""
    by: dict[int, list[float]] = {}
    for p in labels:
        if p.quality == "ok" and 0.2 < p.rr_prev_s < 3.0:
            by.setdefault(int(p.t // 60), []).append(60.0 / p.rr_prev_s)
    return [(m * 60.0, float(np.mean(v)), float(np.min(v)), float(np.max(v))) for m, v in sorted(by.items()) if v]


def _rolling_hr(labels: list[LabelPoint], n: int = 8) -> list[tuple[float, float]]:
    """(time, mean rate of the last ``n`` readable beats) per readable beat."""
    out: list[tuple[float, float]] = []
    rr: list[float] = []
    for p in labels:
        if p.quality == "ok" and 0.2 < p.rr_prev_s < 3.0:
            rr.append(p.rr_prev_s)
            if len(rr) >= n:
                out.append((p.t, 60.0 / float(np.mean(rr[-n:]))))
    return out


def _strips(v: StreamView, summary: dict[str, Any] | None, origin: float) -> list[dict[str, Any]]:
    """Example strips of what is in memory (see the module doc)."""
    t_all, x_all = v.signal()
    if t_all.size == 0:
        return []
    first, last = float(t_all[0]), float(t_all[-1])
    labels = list(v.labels)
    wanted: list[tuple[str, float]] = []  # (title, strip start)
    if summary:
        eps = [e for e in summary.get("af_episodes", []) if _epoch(e.get("start")) is not None]
        if eps:
            longest = max(eps, key=lambda e: float(e.get("duration_s") or 0))
            s = _epoch(longest["start"]) or 0.0
            wanted.append((f"Start of the longest AF episode ({_fmt_duration(longest.get('duration_s'))})", s - 2))
        pauses = [p for p in summary.get("pauses", []) if _epoch(p.get("start")) is not None]
        if pauses:
            longest_p = max(pauses, key=lambda p: float(p.get("duration_s") or 0))
            wanted.append((f"Longest pause ({float(longest_p['duration_s']):.1f} s)",
                           (_epoch(longest_p["start"]) or 0.0) - 2))  # fmt: skip
    for cls, name in (("V", "First ventricular (V) beat"), ("S", "First supraventricular (S) beat")):
        hit = next((p for p in labels if p.quality == "ok" and p.beat_class == cls), None)
        if hit is not None:
            wanted.append((name, hit.t - STRIP_S / 2))
    hr = _rolling_hr(labels)
    if hr:
        fast = max(hr, key=lambda h: h[1])
        slow = min(hr, key=lambda h: h[1])
        wanted.append((f"Fastest heart rate ({fast[1]:.0f} bpm over 8 beats)", fast[0] - STRIP_S / 2))
        if slow[1] < fast[1] - 1:
            wanted.append((f"Slowest heart rate ({slow[1]:.0f} bpm over 8 beats)", slow[0] - STRIP_S / 2))
    if not wanted:
        wanted.append(("Start of the signal in memory", first))
    out: list[dict[str, Any]] = []
    starts: list[float] = []
    for title, a in wanted:
        a = min(max(a, first), max(first, last - STRIP_S))
        if any(abs(a - b) < STRIP_S / 2 for b in starts):
            continue  # the same moment already shown
        lo, hi = np.searchsorted(t_all, a), np.searchsorted(t_all, a + STRIP_S)
        t, x = t_all[lo:hi], x_all[lo:hi]
        if t.size < 0.8 * STRIP_S * v.fs:
            continue
        beats = [(p.t, _key(p)) for p in labels if a <= p.t <= a + STRIP_S]
        out.append({"title": title, "svg": data_uri(strip_svg(t, x, beats, a, STRIP_S)),
                    "when": f"{_clock(a)} (+{_fmt_duration(a - origin)} from the start)"})  # fmt: skip
        starts.append(a)
        if len(out) >= MAX_STRIPS:
            break
    return out


def _report_sync(stream_id: str, summary: dict[str, Any] | None, v: StreamView | None) -> dict[str, Any]:
    labels = list(v.labels) if v is not None else []
    origin = _epoch(summary.get("start")) if summary else None
    if v is not None and v.chunks:
        origin = min(origin or v.chunks[0][0], v.chunks[0][0])
    hourly = [{**h, "hour_start": _epoch(h["hour_start"])} for h in (summary or {}).get("hourly_hr", [])]
    minutes = _minutes(labels)
    chart = data_uri(hr_trend_svg(hourly, minutes)) if (hourly or minutes) else None
    strips = _strips(v, summary, origin or 0.0) if v is not None else []
    episodes = []
    for e in (summary or {}).get("af_episodes", []):
        episodes.append({"start": _clock(_epoch(e.get("start"))),
                         "end": _clock(_epoch(e.get("end"))) if e.get("end") else "ongoing",
                         "duration": _fmt_duration(e.get("duration_s"))})  # fmt: skip
    pauses = [{"start": _clock(_epoch(p.get("start"))), "duration_s": p.get("duration_s")}
              for p in (summary or {}).get("pauses", [])]  # fmt: skip
    return {"hr_chart": chart, "strips": strips, "episodes": episodes, "pauses": pauses,
            "minutes_in_memory": len(minutes)}  # fmt: skip


async def _context(deps: Deps, stream_id: str) -> tuple[dict[str, Any], int]:
    if not _STREAM_ID.match(stream_id):
        return {"stream_id": stream_id, "summary": None, "error": "That is not a stream id.", "fmt": _fmt_duration,
                "clock": _clock, "epoch": _epoch}, 404  # fmt: skip
    summary, error, status = await _summary(deps, stream_id)
    v = deps.live.streams.get(stream_id)
    extra = await asyncio.to_thread(_report_sync, stream_id, summary, v)
    ctx = {"stream_id": stream_id, "summary": summary, "error": error, "view": v,
           "source": v.source if v is not None else None, "generated": _clock(time.time()),
           "fmt": _fmt_duration, "clock": _clock, "epoch": _epoch, **extra}  # fmt: skip
    return ctx, status


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    uploads: dict[str, str] = {}
    with contextlib.suppress(Exception):
        for u in await recent_uploads(deps.redis):
            for s in u.streams:
                uploads[s] = u.recording_id
    rows = []
    for v in reversed(deps.live.streams.values()):
        kept = v.n_samples / v.fs if v.fs else 0.0
        rows.append({"stream_id": v.stream_id, "source": v.source, "beats": len(v.labels), "kept_s": kept,
                     "final": v.final, "age": deps.live.data_age_s(v), "recording": uploads.get(v.stream_id),
                     "last": _clock(v.last_signal_t) if v.last_signal_t else "—"})  # fmt: skip
    return deps.templates.TemplateResponse(request, "reports.html", {"rows": rows})


@router.get("/reports/{stream_id}.pdf")
async def report_pdf(request: Request, stream_id: str, user: User,
                     deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    ctx, status = await _context(deps, stream_id)
    if ctx["summary"] is None:  # no PDF of nothing: the page with the message
        return deps.templates.TemplateResponse(request, "report.html", ctx, status_code=status)
    html = deps.templates.get_template("report_print.html").render({**ctx, "request": request})
    pdf = await asyncio.to_thread(_pdf, html)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stream_id)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="holter-{name}.pdf"'})


def _pdf(html: str) -> bytes:
    from weasyprint import HTML  # local: heavy import, only the PDF needs it

    out: bytes = HTML(string=html).write_pdf()
    return out


@router.get("/reports/{stream_id}", response_class=HTMLResponse)
async def report_page(request: Request, stream_id: str, user: User,
                      deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    ctx, status = await _context(deps, stream_id)
    return deps.templates.TemplateResponse(request, "report.html", ctx, status_code=status if ctx["summary"] is None
                                           else 200)
