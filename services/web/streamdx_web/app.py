"""The console's FastAPI app: pages (Jinja2, server-rendered), static files, sessions, live data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from redis.asyncio import Redis
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from streamdx_web.deps import Deps
from streamdx_web.live import LiveCache, follow_topics
from streamdx_web.routes import alerts, auth, esr, evaluation, kaggle, pages, reports, streams, upload
from streamdx_web.security import LoginRequired, csrf_token
from streamdx_web.settings import WebSettings
from streamdx_web.users import UserStore

__all__ = ["ROUTERS", "create_app", "templates"]

HERE = Path(__file__).parent
log = logging.getLogger("streamdx.web")

#: Every page router (one module per resource); each protects its routes with ``require_user``.
ROUTERS = [auth.router, pages.router, streams.router, evaluation.router, upload.router, esr.router, reports.router,
           alerts.router, kaggle.router]


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=HERE / "templates")
    t.env.globals["csrf_token"] = csrf_token
    return t


def _bearer(token: object) -> dict[str, str]:
    value = getattr(token, "get_secret_value", lambda: None)()
    return {"Authorization": f"Bearer {value}"} if value else {}


def create_app(settings: WebSettings, *, follow: bool = True) -> FastAPI:
    """The console app (``follow=False``: no Kafka followers, for tests that feed the cache)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        ingest = httpx.AsyncClient(base_url=settings.ingest_url, timeout=30,
                                   headers=_bearer(settings.ingest_admin_token), trust_env=False)
        alerts = httpx.AsyncClient(base_url=settings.alerts_url, timeout=10,
                                   headers=_bearer(settings.alerts_admin_token), trust_env=False)
        live = LiveCache(window_s=settings.web_live_window_s, max_streams=settings.web_max_streams)
        app.state.deps = Deps(settings, redis, UserStore(redis), app.state.templates, ingest, alerts, live)
        stop = asyncio.Event()
        task = asyncio.create_task(follow_topics(live, settings.kafka_bootstrap, stop)) if follow else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            await ingest.aclose()
            await alerts.aclose()
            await redis.aclose()

    app = FastAPI(title="StreamDx console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.templates = templates()
    secret = settings.web_session_secret.get_secret_value() if settings.web_session_secret else None
    if secret is None:
        log.warning("WEB_SESSION_SECRET unset: a random key, sessions end when the console restarts")
    app.add_middleware(SessionMiddleware, secret_key=secret or secrets.token_urlsafe(32),
                       session_cookie="streamdx_session", max_age=settings.web_session_max_age_s,
                       same_site="strict", https_only=settings.web_cookie_secure)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        target = f"/login?next={exc.next_path}" if exc.next_path not in ("/", "/login") else "/login"
        if exc.htmx:
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.headers.get("accept", "").startswith("text/html") and exc.status_code >= 400:
            return app.state.templates.TemplateResponse(
                request, "error.html", {"status": exc.status_code, "detail": exc.detail}, status_code=exc.status_code)
        return HTMLResponse(str(exc.detail), status_code=exc.status_code)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"alive": True}

    return app
