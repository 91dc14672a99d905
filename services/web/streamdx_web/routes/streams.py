"""Live streams.

* ``/streams``: the list (HR, rhythm, AF burden, signal quality, last alert, data age); htmx
  polls ``/streams/table``.
* ``/streams/{id}``: one stream — header, live 10-s strip with the beats coloured by label,
  HR trend, open alarms. ``?at=<epoch s>`` freezes the strip around that time when the
  signal is still in memory (alert links), else says so and shows the live strip.
* ``/streams/{id}/panel``: header and open alarms (htmx polls it; alarms from the alerts
  API, or the alarms this console saw on ``alerts.events`` when that API is unreachable).
* ``/streams/{id}/events``: ``text/event-stream`` of the strip's deltas (:mod:`streamdx_web.strip`).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from streamdx_web.alerts_api import list_alerts
from streamdx_web.deps import Deps, get_deps
from streamdx_web.live import StreamView, describe
from streamdx_web.security import User
from streamdx_web.strip import STRIP_S, event_stream, parse_position, server_stopping, window

__all__ = ["router"]

router = APIRouter(tags=["streams"])

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def _rows(deps: Deps) -> list[dict[str, object]]:
    live = deps.live
    return [describe(v, live) for v in reversed(live.streams.values())]


def _checked(stream_id: str) -> str:
    if not STREAM_ID.match(stream_id):
        raise HTTPException(404, "No such stream: a stream id is 1–64 of A–Z a–z 0–9 . _ : - (starting with a "
                                 "letter or digit).")
    return stream_id


@router.get("/streams", response_class=HTMLResponse)
async def streams_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    return deps.templates.TemplateResponse(request, "streams.html", {"rows": _rows(deps)})


@router.get("/streams/table", response_class=HTMLResponse)
async def streams_table(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    """The table alone (htmx polls it every 2 s)."""
    return deps.templates.TemplateResponse(request, "streams_table.html", {"rows": _rows(deps)})


def _open_alarms_seen(v: StreamView | None) -> list[dict[str, Any]]:
    if v is None:
        return []
    return [{"alert_id": e.alert_id, "kind": e.kind, "severity": e.severity, "state": e.state,
             "started_at": e.started_at, "message": e.message, "technical": e.technical, "ack": None}
            for e in sorted(v.open_alerts.values(), key=lambda e: e.started_at, reverse=True)]


def _panel_context(deps: Deps, stream_id: str) -> dict[str, Any]:
    v = deps.live.streams.get(stream_id)
    return {"stream_id": stream_id, "row": describe(v, deps.live) if v is not None else None}


@router.get("/streams/{stream_id}", response_class=HTMLResponse)
async def stream_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)], stream_id: str,
                      at: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    _checked(stream_id)
    v = deps.live.streams.get(stream_id)
    notice = None
    frozen: dict[str, Any] | None = None
    at_t: datetime | None = None
    if at is not None:
        try:
            at_s = float(at)
            if not math.isfinite(at_s) or not 0 < at_s < 1e11:
                raise ValueError
            at_t = datetime.fromtimestamp(at_s, UTC)
        except (ValueError, OverflowError):
            notice = "The time asked for (at=…) is not a time in epoch seconds; showing the live strip."
        else:
            frozen = window(v, at_s) if v is not None else None
            if frozen is not None:
                frozen["at"] = at_s
            if frozen is None:
                notice = (f"The signal around {at_t:%Y-%m-%d %H:%M:%S} UTC is no longer in this console's memory "
                          f"(it keeps the last {deps.live.window_s:.0f} s of each live stream); showing the live "
                          "strip.")
    ctx = _panel_context(deps, stream_id) | {
        "alarms": _open_alarms_seen(v), "alarms_error": None, "alarms_from_api": False,
        "notice": notice, "at_t": at_t if frozen is not None else None, "strip_s": STRIP_S,
        "frozen_json": json.dumps(frozen, separators=(",", ":")) if frozen is not None else None,
    }
    return deps.templates.TemplateResponse(request, "stream.html", ctx)


@router.get("/streams/{stream_id}/panel", response_class=HTMLResponse)
async def stream_panel(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)],
                       stream_id: str) -> Response:
    """Header and open alarms (htmx polls it every 2 s)."""
    _checked(stream_id)
    res = await list_alerts(deps.alerts, [("stream_id", stream_id), ("state", "open"), ("limit", "50")],
                            timeout_s=1.5)
    ctx = _panel_context(deps, stream_id)
    if res.error is None:
        ctx |= {"alarms": res.items, "alarms_error": None, "alarms_from_api": True}
    else:
        ctx |= {"alarms": _open_alarms_seen(deps.live.streams.get(stream_id)), "alarms_error": res.error,
                "alarms_from_api": False}
    return deps.templates.TemplateResponse(request, "stream_panel.html", ctx)


def _user_or_401(request: Request) -> str:
    """The logged-in operator, else 401 (an ``EventSource`` cannot follow a log-in redirect)."""
    user = request.session.get("user")
    if not isinstance(user, str) or not user:
        raise HTTPException(401, "log-in required")
    return user


@router.get("/streams/{stream_id}/events", dependencies=[Depends(_user_or_401)])
async def stream_events(request: Request, deps: Annotated[Deps, Depends(get_deps)], stream_id: str,
                        t: Annotated[float | None, Query()] = None, b: Annotated[int | None, Query()] = None,
                        last_event_id: Annotated[str | None, Header(max_length=64)] = None) -> Response:
    """Server-sent events: the strip's new samples and labels since the client's position."""
    _checked(stream_id)
    pt, pb, first = parse_position(last_event_id, t, b)
    body = event_stream(deps.live, stream_id, pt, pb, first, stopping=server_stopping(request.receive))
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
