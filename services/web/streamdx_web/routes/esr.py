"""``/esr`` and ``/esr/{tube_id}``: ESR tubes the live cache knows (``esr.heights`` / ``esr.forecasts``),
each with its plasma-boundary height curve and the latest 60-minute forecast with its interval,
marked *simulated* when the messages say so."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from streamdx_web.deps import Deps, get_deps
from streamdx_web.esr_chart import ForecastPoint, forecast_history_svg, height_chart_svg, sparkline_svg
from streamdx_web.live import TubeView
from streamdx_web.security import User

__all__ = ["router"]

_TUBE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CHARTS_KEPT = 256


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.esr_charts = OrderedDict()  # (tube_id, version) → (height svg, history svg)
    warm = asyncio.create_task(asyncio.to_thread(_warm_up))  # the first tube page need not import matplotlib
    try:
        yield
    finally:
        await asyncio.gather(warm, return_exceptions=True)


def _warm_up() -> None:
    height_chart_svg({0: 1.0, 1: 0.99}, ForecastPoint(1, 0.6, 0.5, 0.7), simulated=False)


router = APIRouter(tags=["esr"], lifespan=_lifespan)


def _latest(tv: TubeView) -> ForecastPoint | None:
    if not tv.forecasts:
        return None
    f = tv.forecasts[max(tv.forecasts)]
    return ForecastPoint(f.minute, f.h60, f.h60_low, f.h60_high, f.measured_h60)


def _row(tv: TubeView) -> dict[str, Any]:
    last = max(tv.heights) if tv.heights else None
    latest = _latest(tv)
    return {"tube_id": tv.tube_id, "simulated": tv.simulated, "last_minute": last,
            "height": tv.heights[last] if last is not None else None, "forecast": latest,
            "model": tv.forecasts[latest.minute].model if latest else None, "n_forecasts": len(tv.forecasts),
            "spark": sparkline_svg(tv.heights, latest)}


def _tubes(deps: Deps) -> list[dict[str, Any]]:
    return [_row(tv) for tv in sorted(deps.live.tubes.values(), key=lambda t: t.tube_id)]


@router.get("/esr", response_class=HTMLResponse)
async def esr_page(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    return deps.templates.TemplateResponse(request, "esr.html", {"tubes": _tubes(deps)})


@router.get("/esr/table", response_class=HTMLResponse)
async def esr_table(request: Request, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    """The tube table alone (htmx polls it)."""
    return deps.templates.TemplateResponse(request, "esr_table.html", {"tubes": _tubes(deps)})


def _render(heights: dict[int, float], points: list[ForecastPoint], simulated: bool) -> tuple[str, str]:
    latest = points[-1] if points else None
    return (height_chart_svg(heights, latest, simulated=simulated),
            forecast_history_svg(points) if len(points) >= 2 else "")


async def _tube_ctx(request: Request, deps: Deps, tube_id: str) -> dict[str, Any]:
    if not _TUBE_ID.match(tube_id):
        raise HTTPException(404, "No such tube.")
    tv = deps.live.tubes.get(tube_id)
    if tv is None:
        raise HTTPException(404, "The console has no data of this tube: it shows tubes that sent frames since it "
                                 "started.")
    points = [ForecastPoint(f.minute, f.h60, f.h60_low, f.h60_high, f.measured_h60)
              for _, f in sorted(tv.forecasts.items())]
    charts: OrderedDict[tuple[str, int], tuple[str, str]] = request.app.state.esr_charts
    key = (tube_id, tv.version)
    svg = charts.get(key)
    if svg is None:
        svg = await asyncio.to_thread(_render, dict(tv.heights), points, tv.simulated)
        charts[key] = svg
        while len(charts) > _CHARTS_KEPT:
            charts.popitem(last=False)
    return {"tube": _row(tv), "height_svg": svg[0], "history_svg": svg[1], "forecasts": points[::-1][:12],
            "heights": sorted(tv.heights.items()), "version": tv.version}


@router.get("/esr/{tube_id}", response_class=HTMLResponse)
async def tube_page(request: Request, tube_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    return deps.templates.TemplateResponse(request, "esr_tube.html", await _tube_ctx(request, deps, tube_id))


@router.get("/esr/{tube_id}/panel", response_class=HTMLResponse)
async def tube_panel(request: Request, tube_id: str, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    """The charts and figures alone (htmx polls it; 204 when nothing changed)."""
    ctx = await _tube_ctx(request, deps, tube_id)
    if request.headers.get("hx-request") == "true" and request.query_params.get("v") == str(ctx["version"]):
        return Response(status_code=204)
    return deps.templates.TemplateResponse(request, "esr_tube_panel.html", ctx)
