"""The garbage collector of a long-running service process: settings and pause metrics.

A stream service keeps the state of thousands of streams in memory. CPython's cyclic
collector runs a generation-0 pass every 700 net allocations and a full pass whenever
the surviving objects grew by a quarter; a full pass walks every tracked object (every
stream state, every loaded module), so with 1,000 streams it cost the alerts service
about 10 % of a core and pauses of up to 0.3 s (measured with ``streamdx bench e2e``),
which show directly in the label and alert latency. Almost all of the services' garbage
is acyclic and freed by reference counting at once, so collecting less often is safe:
:func:`tune_gc` moves what start-up created (modules, models, settings) out of the
collector's reach (:func:`gc.freeze`) and raises the generation-0 threshold.
:class:`GcPauses` observes the pauses in the services' ``streamdx_gc_pause_seconds`` histogram.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamdx.metrics import PublisherMetrics

__all__ = ["DEFAULT_GC_THRESHOLD0", "GcPauses", "tune_gc", "tuned_gc"]

#: The services' default generation-0 threshold (``GC_THRESHOLD0``).
DEFAULT_GC_THRESHOLD0 = 50_000


def tune_gc(threshold0: int) -> None:
    """Collect once, freeze the survivors of start-up and set the generation-0 threshold.

    Parameters
    ----------
    threshold0 : int
        Net allocations between generation-0 passes; 0 keeps Python's default (700). The
        older generations keep their thresholds (a full pass still follows ten
        generation-1 passes once the survivors grew by a quarter).
    """
    gc.collect()
    gc.freeze()
    if threshold0 > 0:
        _, t1, t2 = gc.get_threshold()
        gc.set_threshold(threshold0, t1, t2)


@contextmanager
def tuned_gc(threshold0: int) -> Iterator[None]:
    """:func:`tune_gc` for the duration of a block; the thresholds are restored and the
    frozen objects released after it (for a measurement run inside another process)."""
    saved = gc.get_threshold()
    tune_gc(threshold0)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


class GcPauses:
    """Observe each collector pass in ``metrics.gc_pause`` (``streamdx_gc_pause_seconds{generation}``).

    The collector's callbacks are global to the process: install one per service process
    and :meth:`close` it when the service stops.
    """

    def __init__(self, metrics: PublisherMetrics) -> None:
        self._children = [metrics.gc_pause.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._children[int(info.get("generation", 2)) % 3].observe(time.perf_counter() - self._started)

    def close(self) -> None:
        """Stop observing (remove the callback)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
