"""Errors the messaging layer raises to its callers (mapped to 503/429 by HTTP shells)."""

from __future__ import annotations

__all__ = ["Backpressure", "BrokerUnavailable"]


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time or cannot be reached; retry later."""

    retry_after_s = 2


class Backpressure(RuntimeError):
    """Too many records are in flight; the caller should slow down."""

    retry_after_s = 1
