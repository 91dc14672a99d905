"""The console's dependencies, built once in the app's lifespan and kept on ``app.state.deps``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request
from fastapi.templating import Jinja2Templates
from redis.asyncio import Redis

from streamdx_web.live import LiveCache
from streamdx_web.settings import WebSettings
from streamdx_web.users import UserStore

__all__ = ["Deps", "get_deps"]


@dataclass
class Deps:
    """Everything a route needs (injected through :func:`get_deps`; no globals).

    Attributes
    ----------
    ingest, alerts : httpx.AsyncClient
        Clients of the ingest and alerts services, with their admin tokens set.
    live : LiveCache
        Recent data of every stream and tube (fed from Kafka).
    """

    settings: WebSettings
    redis: Redis
    users: UserStore
    templates: Jinja2Templates
    ingest: httpx.AsyncClient
    alerts: httpx.AsyncClient
    live: LiveCache


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps
