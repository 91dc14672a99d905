"""Retry delays of webhook deliveries.

Exponential back-off with full jitter (tenacity's ``wait_random_exponential``: attempt ``n``
waits a uniform time in ``[0, min(max, initial·2^(n-1))]``), or plain exponential without
jitter. A ``Retry-After`` header of the receiver (seconds or an HTTP date) replaces the
computed delay, capped at the maximum.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

__all__ = ["Backoff", "parse_retry_after"]


class Backoff:
    """Delay before the next attempt after ``attempts`` failed ones.

    Parameters
    ----------
    initial_s : float
        Upper bound of the first delay (the first delay itself without jitter).
    max_s : float
        Longest delay.
    jitter : bool
        Full jitter (default) or the plain exponential delay.
    """

    def __init__(self, initial_s: float, max_s: float, *, jitter: bool = True) -> None:
        if initial_s <= 0 or max_s <= 0:
            raise ValueError("back-off delays must be positive")
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self._wait: wait_base = (wait_random_exponential if jitter else wait_exponential)(
            multiplier=initial_s, max=max_s)

    def ceiling(self, attempts: int) -> float:
        """The largest delay after ``attempts`` failed attempts (``>= 1``)."""
        return float(min(self.max_s, self.initial_s * 2.0 ** (max(1, attempts) - 1)))

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after ``attempts`` failed attempts (``>= 1``).

        Parameters
        ----------
        attempts : int
            Attempts made so far, all failed.
        retry_after_s : float or None
            The receiver's ``Retry-After`` in seconds, if it sent one: used instead, capped.
        """
        if retry_after_s is not None:
            return float(min(max(0.0, retry_after_s), self.max_s))
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempts)
        return float(self._wait(state))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), ``None`` if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
