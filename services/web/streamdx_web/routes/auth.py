"""``/login`` and ``/logout``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from streamdx_web.deps import Deps, get_deps
from streamdx_web.security import check_csrf

__all__ = ["router"]

router = APIRouter(tags=["auth"])


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/streams"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, deps: Annotated[Deps, Depends(get_deps)], next: str | None = None) -> Response:
    return deps.templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def login(
    request: Request, deps: Annotated[Deps, Depends(get_deps)], username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)], next: Annotated[str | None, Form()] = None,
) -> Response:
    if await deps.users.verify(username, password):
        request.session.clear()  # a fresh session (and CSRF token) on log-in
        request.session["user"] = username
        return RedirectResponse(_safe_next(next), status_code=303)
    await asyncio.sleep(0.3)  # slows guessing a little more than argon2 already does
    return deps.templates.TemplateResponse(request, "login.html", {"next": _safe_next(next),
                                                                   "error": "Wrong user name or password."},
                                           status_code=401)


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
