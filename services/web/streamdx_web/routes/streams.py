"""``/streams``: the list of live streams (HR, rhythm, AF burden, signal quality, last alert, data age)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from streamdx_web.deps import Deps, get_deps
from streamdx_web.live import describe
from streamdx_web.security import User

__all__ = ["router"]

router = APIRouter(tags=["streams"])


def _rows(deps: Deps) -> list[dict[str, object]]:
    live = deps.live
    return [describe(v, live) for v in reversed(live.streams.values())]


@router.get("/streams", response_class=HTMLResponse)
async def streams_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    return deps.templates.TemplateResponse(request, "streams.html", {"rows": _rows(deps)})


@router.get("/streams/table", response_class=HTMLResponse)
async def streams_table(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    """The table alone (htmx polls it every 2 s)."""
    return deps.templates.TemplateResponse(request, "streams_table.html", {"rows": _rows(deps)})
