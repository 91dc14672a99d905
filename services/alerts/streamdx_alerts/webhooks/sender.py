"""One signed webhook POST and what its outcome means.

=====================================  ===========  =================================
response                               outcome      next
=====================================  ===========  =================================
2xx                                    delivered    done
408, 409, 425, 429, 5xx                retry        back-off (``Retry-After`` honoured)
timeout, connection or protocol error  retry        back-off
other 4xx, 1xx, 3xx (never followed)   rejected     dead letter at once
host resolves to a private address     rejected     dead letter at once
=====================================  ===========  =================================

The response body is never read (only the status line and headers).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx

from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.webhooks.backoff import parse_retry_after
from streamdx_alerts.webhooks.signing import payload_bytes, signed_headers
from streamdx_alerts.webhooks.urls import UnsafeAddress, check_resolved_host

__all__ = ["RETRYABLE_STATUS", "Attempt", "Outcome", "Sender", "classify_status"]

Outcome = Literal["delivered", "retry", "rejected"]
#: 4xx statuses that mean "try again later", not "never".
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def classify_status(status: int) -> Outcome:
    """The outcome of a response status (see the module table)."""
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_STATUS or status >= 500:
        return "retry"
    return "rejected"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one POST.

    Attributes
    ----------
    outcome : Outcome
        ``delivered``, ``retry`` or ``rejected``.
    error : str
        ``http_<status>`` or the error type (empty when delivered).
    status : int or None
        HTTP status, ``None`` without a response.
    retry_after_s : float or None
        The receiver's ``Retry-After``.
    started : float
        Wall time the request was sent (epoch s).
    duration_s : float
        Time until the response headers (or the error).
    """

    outcome: Outcome
    error: str
    status: int | None
    retry_after_s: float | None
    started: float
    duration_s: float


class Sender:
    """POSTs signed events with a shared :class:`httpx.AsyncClient` (injected, redirects off).

    Parameters
    ----------
    client : httpx.AsyncClient
        The HTTP client (its timeout is the per-POST timeout).
    allow_private : bool
        Skip the private-address check of the resolved host.
    """

    def __init__(self, client: httpx.AsyncClient, *, allow_private: bool) -> None:
        self._client = client
        self._allow_private = allow_private

    async def send(self, url: str, secret: str | Sequence[str], event: AlertEventV1) -> Attempt:
        """POST ``event`` to ``url`` signed with ``secret`` (one or several); never raises for network errors."""
        started = time.time()
        t0 = time.perf_counter()
        if not self._allow_private:
            try:
                await check_resolved_host(url)
            except UnsafeAddress:
                return Attempt("rejected", "private_address", None, None, started, time.perf_counter() - t0)
        body = payload_bytes(event)
        headers = signed_headers(secret, event.event_id, body, datetime.now(UTC))
        try:
            async with self._client.stream("POST", url, content=body, headers=headers) as resp:
                status = resp.status_code
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            return Attempt("retry", type(exc).__name__, None, None, started, time.perf_counter() - t0)
        except OSError as exc:
            return Attempt("retry", type(exc).__name__, None, None, started, time.perf_counter() - t0)
        outcome = classify_status(status)
        return Attempt(outcome, "" if outcome == "delivered" else f"http_{status}", status,
                       retry_after if outcome == "retry" else None, started, time.perf_counter() - t0)
