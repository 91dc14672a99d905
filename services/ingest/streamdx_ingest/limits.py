"""ASGI middlewares: body size limit (HTTP 413, enforced while streaming) and request metrics.

A body over the limit is refused with 413 whether it declares its length or is sent with chunked
transfer encoding; either way the request is counted under the route it was sent to.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamdx.metrics import IngestMetrics

__all__ = ["BodyLimitMiddleware", "RequestMetricsMiddleware"]


class _TooLarge(HTTPException):
    """Raised while reading a body past the limit; an HTTP exception, so the app answers 413
    (FastAPI turns any other error raised while reading a body into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body exceeds the {limit}-byte limit")


class BodyLimitMiddleware:
    """Reject bodies larger than ``limit_for(path)`` bytes, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "invalid Content-Length")
                    return
                if declared > limit:
                    await self._reject(send, 413, f"body of {declared} bytes exceeds the {limit}-byte limit")
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge as exc:
            if not started:
                await self._reject(send, 413, str(exc.detail))

    @staticmethod
    async def _reject(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})


class RequestMetricsMiddleware:
    """Count HTTP requests by route template and status (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.metrics.http_requests.labels(route=route_template(scope), status=str(status)).inc()


def route_template(scope: Scope) -> str:
    """The path template of the route ``scope`` was or would be routed to; ``"unmatched"`` if none.

    A request refused before routing (a declared body over the limit) is matched here, so its
    413 is counted under its route.
    """
    route = scope.get("route")
    if route is None and scope.get("app") is not None:
        for candidate in getattr(scope["app"], "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
    return str(getattr(route, "path", "unmatched"))
