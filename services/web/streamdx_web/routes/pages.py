"""``/``: the home page redirects to the stream list."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from streamdx_web.security import User

__all__ = ["router"]

router = APIRouter(tags=["pages"])


@router.get("/")
async def home(user: User) -> RedirectResponse:
    return RedirectResponse("/streams", status_code=303)
