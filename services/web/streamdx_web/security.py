"""Sessions, log-in and CSRF protection of the console.

* **Sessions**: a signed cookie (Starlette ``SessionMiddleware``, itsdangerous) holding only
  the operator's name and the session's CSRF token — no patient data. ``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` (``WEB_COOKIE_SECURE``), limited lifetime.
* **Log-in required**: :func:`require_user` (a dependency of every page router) redirects
  to ``/login`` — a full page for normal requests, an ``HX-Redirect`` header for htmx ones,
  401 for API/stream endpoints.
* **CSRF**: synchronizer token; every POST/PUT/PATCH/DELETE must carry the session's token
  as form field ``csrf_token`` or header ``X-CSRF-Token`` (:func:`check_csrf`), compared in
  constant time; htmx sends the header from the page's ``<meta name="csrf-token">``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

__all__ = ["LoginRequired", "User", "check_csrf", "csrf_token", "require_user"]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoginRequired(Exception):
    """Raised by :func:`require_user`; the app turns it into a redirect to ``/login``."""

    def __init__(self, next_path: str, htmx: bool) -> None:
        super().__init__("login required")
        self.next_path = next_path
        self.htmx = htmx


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Dependency: reject an unsafe request without the session's CSRF token (403)."""
    if request.method not in _UNSAFE:
        return
    expected = request.session.get("csrf")
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def require_user(request: Request) -> str:
    """Dependency: the logged-in operator's name, or :class:`LoginRequired`."""
    user = request.session.get("user")
    if not isinstance(user, str) or not user:
        path = request.url.path
        raise LoginRequired(path if path.startswith("/") and not path.startswith("//") else "/",
                            request.headers.get("hx-request") == "true")
    return user


User = Annotated[str, Depends(require_user)]
