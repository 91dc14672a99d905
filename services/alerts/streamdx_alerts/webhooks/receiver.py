"""A minimal webhook receiver (what a subscriber runs), for the demo and the latency benchmark.

Verifies every request with the Standard Webhooks library, answers 401 to a bad signature,
de-duplicates on ``webhook-id`` (a redelivery is acknowledged again but kept once) and keeps
each event with the wall time it arrived.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["Received", "WebhookReceiver"]


@dataclass(frozen=True)
class Received:
    """One verified webhook: its id, arrival wall time (s) and the event (``data`` of the payload)."""

    webhook_id: str
    at: float
    event: dict[str, Any]


@dataclass
class WebhookReceiver:
    """Call :meth:`app` for the ASGI app (POST ``/hook``); set ``secret`` before the first request."""

    secret: str = ""
    received: dict[str, Received] = field(default_factory=dict)
    rejected: int = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                Webhook(self.secret).verify(body, dict(request.headers))
            except WebhookVerificationError:
                self.rejected += 1
                return Response(status_code=401)
            wid = request.headers.get("webhook-id", "")
            if wid not in self.received:
                self.received[wid] = Received(wid, time.time(), json.loads(body)["data"])
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def events(self) -> list[dict[str, Any]]:
        """Received events in arrival order."""
        return [r.event for r in sorted(self.received.values(), key=lambda r: r.at)]
