"""Admin authentication of the alerts API: ``Authorization: Bearer <ALERTS_ADMIN_TOKEN>``.

The token is read once into the settings and set as ``app.state.admin_token``; an app
without one answers 503 on every admin route (the API is disabled, never open).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header, HTTPException, Request
from pydantic import SecretStr

__all__ = ["require_admin"]


async def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """FastAPI dependency: 503 when no admin token is configured, 401 on a missing or wrong token."""
    expected: SecretStr | None = getattr(request.app.state, "admin_token", None)
    if expected is None:
        raise HTTPException(503, "the alerts admin API is disabled: set ALERTS_ADMIN_TOKEN")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})
