"""The alert log API: list, filter and acknowledge alerts; a per-stream overview.

=======================================  =====================================================
``GET  /v1/alerts``                      alerts newest first (by started_at), filtered:
                                         ``stream_id``, ``kind`` (repeatable), ``severity``
                                         (minimum), ``state`` (open|resolved|all), ``acked``,
                                         ``technical``, ``since``/``until`` (started_at, ISO),
                                         ``limit`` (1..500), ``cursor`` (a page's next_cursor)
``GET  /v1/alerts/{alert_id}``           one alert with its history and ack
``POST /v1/alerts/{alert_id}/ack``       ``{"by": "operator", "note": "..."}`` → the alert;
                                         acking again keeps the first ack (200, unchanged)
``GET  /v1/streams``                     per stream: its latest alert and open alert count
=======================================  =====================================================

Every route needs the admin bearer token (:func:`streamdx_alerts.api.auth.require_admin`).
Dependencies come from ``app.state.alert_log`` (:class:`~streamdx_alerts.alert_log.AlertLog`).
Validation errors are 422 and never echo the submitted values.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError, field_validator

from streamdx.schemas.alerts import AlertKind, Severity
from streamdx_alerts.alert_log import (
    ACK_BY_PATTERN,
    NOTE_MAX,
    AlertFilter,
    AlertLog,
    AlertPage,
    AlertView,
    StateFilter,
    StreamOverview,
)
from streamdx_alerts.api.auth import require_admin

__all__ = ["AckRequest", "alerts_router"]

ALERT_ID = r"^[A-Za-z0-9._:-]{1,200}$"
STREAM_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class AckRequest(BaseModel):
    """Body of ``POST /v1/alerts/{alert_id}/ack``."""

    model_config = {"extra": "forbid"}

    by: str = Field(pattern=ACK_BY_PATTERN, description="Operator name: 1..64 of A-Z a-z 0-9 . _ @ -")
    note: str | None = Field(default=None, max_length=NOTE_MAX, description=f"Optional note (≤ {NOTE_MAX} chars)")

    @field_validator("note")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("control characters are not allowed")
        return v


def _clean(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the submitted values (``input``, ``ctx``)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


class _NoEchoRoute(APIRoute):
    """422 on request validation errors, listing where and why but never the values sent."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise HTTPException(422, _clean(exc.errors())) from None

        return route


def _log(request: Request) -> AlertLog:
    alert_log: AlertLog = request.app.state.alert_log
    return alert_log


Log = Annotated[AlertLog, Depends(_log)]
AlertIdPath = Annotated[str, Path(pattern=ALERT_ID, description="The alert's id")]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def alerts_router() -> APIRouter:
    """The routes (see the module doc), all behind :func:`require_admin`."""
    router = APIRouter(tags=["alerts"], dependencies=[Depends(require_admin)], route_class=_NoEchoRoute)
    missing: dict[int | str, dict[str, Any]] = {404: {"description": "No such alert (or it expired)"}}

    @router.get("/v1/alerts", response_model=AlertPage)
    async def list_alerts(
        alert_log: Log,
        stream_id: Annotated[str | None, Query(pattern=STREAM_ID, description="Only this stream")] = None,
        kind: Annotated[list[AlertKind] | None, Query(description="Only these kinds (repeatable)")] = None,
        severity: Annotated[Severity | None, Query(description="Minimum severity")] = None,
        state: Annotated[StateFilter, Query(description="open, resolved or all")] = "all",
        acked: Annotated[bool | None, Query(description="Only acknowledged (true) / not (false)")] = None,
        technical: Annotated[bool | None, Query(description="Only technical (true) / clinical (false)")] = None,
        since: Annotated[datetime | None, Query(description="started_at at or after (ISO 8601; naive = UTC)")] = None,
        until: Annotated[datetime | None, Query(description="started_at at or before (ISO 8601; naive = UTC)")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Items per page")] = 100,
        cursor: Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page")] = None,
    ) -> AlertPage:
        """Alerts newest first (by signal-time started_at). Follow ``next_cursor`` for more; a
        very selective filter can return a short page with a cursor (the scan is bounded)."""
        flt = AlertFilter(stream_id=stream_id, kinds=frozenset(kind) if kind else None, min_severity=severity,
                          state=state, acked=acked, technical=technical, since=since, until=until)
        try:
            return await alert_log.query(flt, limit, cursor)
        except ValueError:
            raise HTTPException(422, [{"loc": ["query", "cursor"], "msg": "invalid cursor",
                                       "type": "value_error"}]) from None

    @router.get("/v1/alerts/{alert_id}", response_model=AlertView, responses=missing)
    async def get_alert(alert_log: Log, alert_id: AlertIdPath) -> AlertView:
        """One alert: its latest event, history (oldest first) and acknowledgement."""
        view = await alert_log.get(alert_id)
        if view is None:
            raise HTTPException(404, "no such alert")
        return view

    @router.post("/v1/alerts/{alert_id}/ack", response_model=AlertView, responses=missing,
                 openapi_extra=_body_schema(AckRequest))
    async def ack_alert(alert_log: Log, alert_id: AlertIdPath, body: Annotated[Any, Body()]) -> AlertView:
        """Acknowledge an alert (open or resolved). An alert acked already keeps its first ack:
        the answer is 200 with that ack, unchanged. Later events of the alert keep the ack."""
        try:
            req = AckRequest.model_validate(body)
        except ValidationError as exc:
            raise HTTPException(422, [{**e, "loc": ["body", *e["loc"]]} for e in _clean(exc.errors())]) from None
        view = await alert_log.ack(alert_id, req.by, req.note)
        if view is None:
            raise HTTPException(404, "no such alert")
        return view

    @router.get("/v1/streams", response_model=list[StreamOverview], tags=["streams"])
    async def list_streams(
        alert_log: Log, limit: Annotated[int, Query(ge=1, le=1000, description="Streams at most")] = 500,
    ) -> list[StreamOverview]:
        """Streams that have alerts in the log, most recent alert first: that alert's time, kind,
        severity and state, and how many of the stream's alerts are open."""
        return await alert_log.streams(limit)

    return router
