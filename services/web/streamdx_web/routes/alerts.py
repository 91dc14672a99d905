"""``/alerts``: the alert log (alerts service ``GET /v1/alerts``), filtered, acknowledged.

* ``/alerts``: filters (state, minimum severity, kind, stream, acknowledged), the list newest
  first, links to the strip around each alarm; htmx polls ``/alerts/table`` every 3 s so a new
  alarm appears without a reload (not on older pages: ``cursor``).
* ``POST /alerts/{alert_id}/ack`` (CSRF): acknowledges as the logged-in operator through
  ``POST /v1/alerts/{id}/ack``; answers the updated table row (htmx swaps it in).

When the alerts service is unreachable or refuses, the page says so and keeps polling.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from streamdx.schemas.alerts import ALERT_KINDS
from streamdx_web.alerts_api import ack_alert, list_alerts
from streamdx_web.deps import Deps, get_deps
from streamdx_web.security import User, check_csrf

__all__ = ["router"]

router = APIRouter(tags=["alerts"])

STATES = ("all", "open", "resolved")
SEVERITIES = ("info", "warning", "critical")
ACKED = {"yes": "true", "no": "false"}
STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CURSOR = re.compile(r"^[A-Za-z0-9_=-]{1,400}$")
PAGE = 100


def _filters(state: str | None, severity: str | None, kind: str | None, stream_id: str | None,
             acked: str | None, cursor: str | None) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
    """(the form's values, the API's query, messages about values left out)."""
    form = {"state": state or "all", "severity": severity or "", "kind": kind or "",
            "stream_id": (stream_id or "").strip(), "acked": acked or "", "cursor": cursor or ""}
    problems: list[str] = []
    if form["state"] not in STATES:
        problems.append("State must be all, open or resolved.")
        form["state"] = "all"
    if form["severity"] and form["severity"] not in SEVERITIES:
        problems.append("Severity must be info, warning or critical.")
        form["severity"] = ""
    if form["kind"] and form["kind"] not in ALERT_KINDS:
        problems.append("Unknown alarm kind.")
        form["kind"] = ""
    if form["stream_id"] and not STREAM_ID.match(form["stream_id"]):
        problems.append("A stream id is 1–64 of A–Z a–z 0–9 . _ : - (starting with a letter or digit).")
        form["stream_id"] = ""
    if form["acked"] and form["acked"] not in ACKED:
        problems.append("Acknowledged must be yes or no.")
        form["acked"] = ""
    if form["cursor"] and not CURSOR.match(form["cursor"]):
        problems.append("That page link is not valid any more; showing the newest alerts.")
        form["cursor"] = ""
    params: list[tuple[str, str]] = [("state", form["state"]), ("limit", str(PAGE))]
    if form["severity"]:
        params.append(("severity", form["severity"]))
    if form["kind"]:
        params.append(("kind", form["kind"]))
    if form["stream_id"]:
        params.append(("stream_id", form["stream_id"]))
    if form["acked"]:
        params.append(("acked", ACKED[form["acked"]]))
    if form["cursor"]:
        params.append(("cursor", form["cursor"]))
    return form, params, problems


def _next_link(form: dict[str, str], cursor: str | None) -> str | None:
    if not cursor:
        return None
    q = {k: v for k, v in form.items() if v and k != "cursor"} | {"cursor": cursor}
    return "/alerts?" + urlencode(q)


async def _context(deps: Deps, state: str | None, severity: str | None, kind: str | None, stream_id: str | None,
                   acked: str | None, cursor: str | None, timeout_s: float) -> dict[str, Any]:
    form, params, problems = _filters(state, severity, kind, stream_id, acked, cursor)
    res = await list_alerts(deps.alerts, list(params), timeout_s=timeout_s)
    return {"form": form, "problems": problems, "alerts": res.items, "error": res.error,
            "next_link": _next_link(form, res.next_cursor), "kinds": ALERT_KINDS, "severities": SEVERITIES,
            "now": datetime.now(UTC)}


Filter = Annotated[str | None, Query(max_length=64)]


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)],
                      state: Filter = None, severity: Filter = None, kind: Filter = None, stream_id: Filter = None,
                      acked: Filter = None, cursor: Annotated[str | None, Query(max_length=400)] = None) -> Response:
    ctx = await _context(deps, state, severity, kind, stream_id, acked, cursor, timeout_s=0.8)
    return deps.templates.TemplateResponse(request, "alerts.html", ctx)


@router.get("/alerts/table", response_class=HTMLResponse)
async def alerts_table(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)],
                       state: Filter = None, severity: Filter = None, kind: Filter = None, stream_id: Filter = None,
                       acked: Filter = None) -> Response:
    """The list alone (htmx polls it every 3 s with the form's filters)."""
    ctx = await _context(deps, state, severity, kind, stream_id, acked, None, timeout_s=2.5)
    return deps.templates.TemplateResponse(request, "alerts_table.html", ctx)


@router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def acknowledge(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)],
                      alert_id: Annotated[str, Path(max_length=200)]) -> Response:
    """Acknowledge as the operator; the answer is the alert's updated row (or a row saying why not)."""
    a: dict[str, Any] | None = None
    why: str | None = "That is not an alert id."
    if re.match(r"^[A-Za-z0-9._:-]{1,200}$", alert_id):
        a, why = await ack_alert(deps.alerts, alert_id, user)
    if a is None:
        return deps.templates.TemplateResponse(request, "alert_row_error.html", {"why": why})
    return deps.templates.TemplateResponse(request, "alert_row.html", {"a": a, "just_acked": True})

