"""Calls of the alerts service's alert-log API (``GET /v1/alerts``, ``POST /v1/alerts/{id}/ack``)
that never raise: every failure becomes a message a person can act on."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from streamdx.logs import log_fields

__all__ = ["AlertsResult", "ack_alert", "list_alerts", "parse_times"]

log = logging.getLogger("streamdx.web")

_TIME_FIELDS = ("started_at", "criterion_at", "ended_at", "raised_at", "updated_at")
_last_warning = [0.0]


def _warn(exc: Exception) -> None:
    """One warning a minute at most (pages poll every few seconds)."""
    now = time.monotonic()
    if now - _last_warning[0] >= 60.0:
        _last_warning[0] = now
        log.warning("alerts API unreachable", extra=log_fields(error_type=type(exc).__name__))


@dataclass
class AlertsResult:
    """Alerts (dicts as the API gives them, times parsed) or why there are none."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    error: str | None = None


def parse_times(a: dict[str, Any]) -> dict[str, Any]:
    """The alert with its ISO times as datetimes (and the ack's ``acked_at``)."""
    out = dict(a)
    for k in _TIME_FIELDS:
        if isinstance(out.get(k), str):
            out[k] = datetime.fromisoformat(out[k])
    ack = out.get("ack")
    if isinstance(ack, dict) and isinstance(ack.get("acked_at"), str):
        out["ack"] = {**ack, "acked_at": datetime.fromisoformat(ack["acked_at"])}
    return out


def _why(exc: Exception | None, status: int | None, base_url: str) -> str:
    if status == 401 or status == 403:
        return (f"The alerts service at {base_url} refused the console's token (HTTP {status}): "
                "check ALERTS_ADMIN_TOKEN.")
    if status == 404:
        return (f"The alerts service at {base_url} has no alert log API (/v1/alerts): "
                "it needs a version with the alert log.")
    if status is not None:
        return f"The alerts service at {base_url} answered HTTP {status}; retrying."
    kind = type(exc).__name__ if exc is not None else "error"
    return f"The alerts service at {base_url} is unreachable ({kind}); retrying."


async def list_alerts(client: httpx.AsyncClient, params: list[tuple[str, str | int | float | bool | None]],
                      timeout_s: float = 2.0) -> AlertsResult:
    """``GET /v1/alerts`` with ``params``; never raises."""
    try:
        r = await client.get("/v1/alerts", params=params, timeout=timeout_s)
    except httpx.HTTPError as exc:
        _warn(exc)
        return AlertsResult(error=_why(exc, None, str(client.base_url)))
    if r.status_code == 422:
        return AlertsResult(error="The alerts service did not accept this filter (HTTP 422): check the values.")
    if r.status_code != 200:
        return AlertsResult(error=_why(None, r.status_code, str(client.base_url)))
    try:
        body = r.json()
        items = [parse_times(a) for a in body["items"]]
        return AlertsResult(items=items, next_cursor=body.get("next_cursor"))
    except (ValueError, KeyError, TypeError):
        return AlertsResult(error="The alerts service answered something unexpected; retrying.")


async def ack_alert(client: httpx.AsyncClient, alert_id: str, by: str,
                    timeout_s: float = 5.0) -> tuple[dict[str, Any] | None, str | None]:
    """``POST /v1/alerts/{alert_id}/ack`` as ``by``: ``(alert, None)`` or ``(None, why)``."""
    try:
        r = await client.post(f"/v1/alerts/{alert_id}/ack", json={"by": by}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        _warn(exc)
        return None, _why(exc, None, str(client.base_url)) + " The alert was not acknowledged."
    if r.status_code == 404:
        return None, "This alert is no longer in the alert log (expired or removed)."
    if r.status_code == 422:
        return None, "The alerts service refused the acknowledgement (HTTP 422)."
    if r.status_code != 200:
        return None, _why(None, r.status_code, str(client.base_url)) + " The alert was not acknowledged."
    try:
        return parse_times(r.json()), None
    except (ValueError, TypeError):
        return None, "The alerts service answered something unexpected."
