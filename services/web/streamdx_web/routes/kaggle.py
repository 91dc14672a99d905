"""``/upload/kaggle/{id}``: the classes of an uploaded single-beat (Kaggle layout) CSV.

The upload itself is ``POST /upload`` (:mod:`streamdx_web.routes.upload`), which parses, classifies
and stores the result (:mod:`streamdx_web.kaggle_beats`). These pages only read it: class counts,
every row's class and probabilities (paged, filterable), a plot of the selected beat, and — when
the file had a class column — the evaluation view of the Evaluation page (accuracy, per-class
precision / recall / F1 with macro averages, N vs abnormal, the confusion matrix); downloads as
CSV or JSON.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from streamdx_web.deps import Deps, get_deps
from streamdx_web.kaggle_beats import (
    CLASSES,
    FILTERS,
    Arrays,
    beat_json,
    load_arrays,
    load_summary,
    metrics_view,
    predictions_csv,
    predictions_json,
    row_page,
)
from streamdx_web.security import User

__all__ = ["router"]

router = APIRouter(tags=["upload"])

_GONE = "No such classification (the console keeps the latest 30 single-beat files); upload the CSV again."


def _runs(deps: Deps) -> Path:
    return Path(deps.settings.web_runs_dir)


def _summary(deps: Deps, rid: str) -> dict[str, Any]:
    s = load_summary(_runs(deps), rid)
    if s is None:
        raise HTTPException(404, _GONE)
    return s


def _arrays(deps: Deps, rid: str) -> Arrays:
    a = load_arrays(_runs(deps), rid)
    if a is None:
        raise HTTPException(404, _GONE)
    return a


def _show(show: str, labelled: bool) -> str:
    return show if show in FILTERS and (show != "errors" or labelled) else "all"


def _rows_ctx(s: dict[str, Any], a: Arrays, page: int, show: str) -> dict[str, Any]:
    show = _show(show, bool(s.get("has_labels")))
    rows, pages, matching = row_page(a, page, show)
    return {"s": s, "rows": rows, "page": min(max(page, 1), pages), "pages": pages, "matching": matching,
            "show": show, "classes": CLASSES}  # fmt: skip


@router.get("/upload/kaggle/{rid}", response_class=HTMLResponse)
async def kaggle_result(request: Request, rid: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                        page: int = 1, show: str = "all") -> Response:  # fmt: skip
    s = _summary(deps, rid)
    a = _arrays(deps, rid)
    ctx = await asyncio.to_thread(_rows_ctx, s, a, page, show)
    tables, confusion = metrics_view(s["metrics"]) if s.get("metrics") else ([], None)
    first_error = None
    if s.get("has_labels") and a.labels is not None:
        wrong = await asyncio.to_thread(lambda: (a.pred != a.labels).nonzero()[0][:1])
        first_error = int(wrong[0]) + 1 if wrong.size else None
    return deps.templates.TemplateResponse(request, "kaggle_result.html", {
        **ctx, "tables": tables, "c": confusion, "first_error": first_error,
    })  # fmt: skip


@router.get("/upload/kaggle/{rid}/rows", response_class=HTMLResponse)
async def kaggle_rows(request: Request, rid: str, user: User, deps: Annotated[Deps, Depends(get_deps)],
                      page: int = 1, show: str = "all") -> Response:  # fmt: skip
    s = _summary(deps, rid)
    ctx = await asyncio.to_thread(_rows_ctx, s, _arrays(deps, rid), page, show)
    return deps.templates.TemplateResponse(request, "kaggle_rows.html", ctx)


@router.get("/upload/kaggle/{rid}/beats/{row}")
async def kaggle_beat(rid: str, row: int, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> JSONResponse:
    b = beat_json(_arrays(deps, rid), row)
    if b is None:
        raise HTTPException(404, f"No row {row} in this file.")
    return JSONResponse(b)


@router.get("/upload/kaggle/{rid}/predictions.csv")
async def kaggle_csv(rid: str, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    _summary(deps, rid)
    body = await asyncio.to_thread(predictions_csv, _arrays(deps, rid))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="beat-classes-{rid[:12]}.csv"'},
    )


@router.get("/upload/kaggle/{rid}/predictions.json")
async def kaggle_json(rid: str, user: User, deps: Annotated[Deps, Depends(get_deps)]) -> Response:
    s = _summary(deps, rid)
    body = await asyncio.to_thread(lambda: json.dumps(predictions_json(_arrays(deps, rid), s)))
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="beat-classes-{rid[:12]}.json"'},
    )
